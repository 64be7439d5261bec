"""Data for scoring trials: the hold-out split and k folds, identical for every trial."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from dryml.search._space import Space

__all__ = ["make_folds", "split_for_scoring"]

DEFAULT_HOLDOUT = 0.2


def _argument(definition: Any, name: str) -> Any:
    """The constructor argument ``name`` of a definition, passed by keyword or by position
    (``TrainSpec(10, 32, 0.5)`` was scored on the default 20%, not its 50%)."""
    kwargs = {k: v for k, v in definition.kwargs.items() if k != "dry_id"}
    try:
        bound = inspect.signature(definition.cls.__init__).bind_partial(
            None, *definition.args, **kwargs)  # (None for self)
    except TypeError:
        return kwargs.get(name)
    return bound.arguments.get(name)


def _validation_split(space: Space) -> float:
    """The largest ``validation_split`` of a TrainSpec anywhere in the space (0 if none)."""
    from dryml._objectdef import iter_defs
    from dryml.models import TrainSpec

    found = [split for d in iter_defs(space.definition) if issubclass(d.cls, TrainSpec)
             and isinstance(split := _argument(d, "validation_split"), float)]
    return max(found, default=0.0)


def split_for_scoring(space: Space, train: Any, seed: int) -> tuple[Any, Any]:
    """``(train, valid)``: the TrainSpec's ``validation_split`` of ``train`` held out for
    scoring (20% when the space has none), the same rows for every trial."""
    from dryml.data import NumpyDataset
    from dryml.models import split_validation, supervised_arrays

    fraction = _validation_split(space) or DEFAULT_HOLDOUT
    x, y = supervised_arrays(train)
    (xt, yt), (xv, yv) = split_validation(x, y, fraction, seed)
    return (NumpyDataset((xt, yt), supervised=True), NumpyDataset((xv, yv), supervised=True))


def make_folds(train: Any, k: int, seed: int) -> list[tuple[Any, Any]]:
    """``k`` (train, valid) pairs of a seeded shuffle of ``train``."""
    from dryml.data import NumpyDataset
    from dryml.models import supervised_arrays

    x, y = supervised_arrays(train)
    order = np.random.default_rng(seed).permutation(len(x))
    parts = np.array_split(order, k)
    out = []
    for i in range(k):
        valid = np.sort(parts[i])
        rest = np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i]))
        out.append((NumpyDataset((x[rest], y[rest]), supervised=True),
                    NumpyDataset((x[valid], y[valid]), supervised=True)))
    return out
