"""Checks of the states in a scikit-learn entry that compiled code reads unchecked, run on
skops' node tree before anything is constructed (after :func:`dryml_sklearn._trust.untrusted`
found every name trusted): numpy's random states, and the state tuples of scikit-learn's trees
and trusted distance metrics. A crafted state crashed the process inside a compiled
``__setstate__``, before any check after loading could run."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from dryml_sklearn import _checks
from dryml_sklearn._trust import walk

__all__ = ["check_states"]


def check_states(tree: Any) -> None:
    """FormatError unless the states the tree holds that compiled code trusts are ones their
    libraries write (one walk of the tree for both): numpy's random states (see
    :func:`_check_random_state`) and the state tuples of scikit-learn's trees and trusted
    metrics (:func:`_check_compiled_state`). Call after :func:`untrusted` found nothing."""
    from skops.io._general import ObjectNode
    from skops.io._numpy import RandomGeneratorNode, RandomStateNode

    for node, _ in walk(tree):
        if isinstance(node, (RandomStateNode, RandomGeneratorNode)):
            _check_random_state(node)
        elif isinstance(node, ObjectNode):
            _check_compiled_state(node)


def _check_random_state(node: Any) -> None:
    """A numpy ``RandomState`` or ``Generator`` state is one numpy writes: numpy trusts them
    (an ``MT19937`` position past its key crashed the process at the first draw), and a
    Generator's SeedSequence ``pool_size`` drives work that grows with its square (an 11 KB
    file asking for 750 million ran for minutes). The states are built (plain values only)
    to be checked."""
    from skops.io._numpy import RandomStateNode

    from dryml._random_states import check_bit_generator_state
    from dryml.errors import FormatError

    if isinstance(node, RandomStateNode):
        check_bit_generator_state(node.content.construct(), legacy=True)
        return
    check_bit_generator_state(node.bit_generator_state.construct())
    state = node.seed_seq_state.construct()
    if not (isinstance(state, dict) and set(state) <= _SEED_SEQUENCE_KEYS
            and _small_int(state.get("pool_size", 4), 4, 256)
            and _small_int(state.get("n_children_spawned", 0), 0, 2**63)
            and _entropy_ok(state.get("entropy"))
            and isinstance(spawn := state.get("spawn_key", ()), (tuple, list))
            and len(spawn) <= 64 and all(_small_int(k, 0, 2**64) for k in spawn)):
        raise FormatError("a numpy random generator's seed sequence in the scikit-learn "
                          f"data is not one numpy writes ({str(state)[:200]}): the file "
                          "was altered")


_SEED_SEQUENCE_KEYS = frozenset({"entropy", "spawn_key", "pool_size", "n_children_spawned"})


def _small_int(value: Any, low: int, high: int) -> bool:
    """An int (Python or numpy) in ``[low, high)``."""
    if isinstance(value, np.integer):
        value = int(value)
    return type(value) is int and low <= value < high


def _entropy_ok(value: Any) -> bool:
    """None, an int of at most a few thousand bits, or a short sequence (or integer array) of
    them, as ``SeedSequence(entropy)`` takes."""
    if value is None:
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "iu" and value.size <= 256 and bool((value >= 0).all())
    values = value if isinstance(value, (list, tuple)) else [value]
    return len(values) <= 256 and all(_small_int(v, 0, 2**8192) for v in values)


def _check_compiled_state(node: Any) -> None:
    """A KDTree, BallTree or trusted distance metric holds the state tuple scikit-learn
    writes, with as many parts as its compiled ``__setstate__`` reads: it reads them without
    bounds checks, so a shorter one crashed the process while loading, before any check
    after loading could run."""
    from skops.io._general import TupleNode

    from dryml.errors import FormatError

    want = _state_lengths().get(f"{node.module_name}.{node.class_name}")
    if want is None:
        return
    attrs = node.children.get("attrs")
    parts = attrs.children.get("content") if isinstance(attrs, TupleNode) else None
    if not (isinstance(parts, list) and len(parts) == want):
        raise FormatError(f"a {node.class_name} in the scikit-learn data does not hold the "
                          f"state scikit-learn writes ({want} parts, which its compiled "
                          "loader reads unchecked): the file was altered")


@functools.cache
def _state_lengths() -> dict[str, int]:
    """How many parts the installed scikit-learn's trees and trusted metrics keep as state."""
    from sklearn.metrics import _dist_metrics
    from sklearn.neighbors import BallTree, KDTree

    data = np.zeros((1, 1))
    out = {f"{cls.__module__}.{cls.__qualname__}": len(cls(data).__getstate__())
           for cls in (KDTree, BallTree)}
    for name in _checks.EXTRA_TRUSTED:
        module, _, cls_name = name.rpartition(".")
        metric = getattr(_dist_metrics, cls_name, None) if module == _dist_metrics.__name__ \
            else None
        if metric is not None:  # (a metric this scikit-learn does not have matches no file)
            out[name] = len(metric.__new__(metric).__getstate__())
    return out
