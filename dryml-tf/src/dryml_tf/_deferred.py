"""Rebuild a Keras model from a file's config without allocating its variables first.

Keras allocates (and randomly initializes) every variable while it rebuilds a model from its
config, before any weight is read: a 4 KB file whose config says ``Dense(25_000_000)`` made
the rebuild take 1.2 GB before the weights' shapes could be compared. Keras' own
``StatelessScope(initialize_variables=False)`` defers that: variables created inside it get a
shape and an initializer but no value (as torch's ``meta`` device does), so the bytes the
config asks for can be added up and compared with the bytes the file stores before anything
is allocated; only then are the variables initialized (what leaving a ``StatelessScope``
does).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import keras

from dryml.errors import FormatError

__all__ = ["SLACK_BYTES", "rebuild", "stored_bytes"]

#: Bytes a rebuilt model may ask for beyond ``budget``: variables Keras creates but does not
#: save (a compiled model's metric accumulators, seed generators) are small.
SLACK_BYTES = 64 * 2**20


def _registry() -> list[Any] | None:
    """Keras' list of the variables created uninitialized in this thread, or None when this
    Keras keeps it elsewhere or a stateless scope is open already (the model is then rebuilt
    as Keras does, unbounded)."""
    try:
        from keras.src.backend.common import global_state
        from keras.src.backend.common.stateless_scope import in_stateless_scope
    except ImportError:
        return None
    if in_stateless_scope():
        return None
    found = global_state.get_global_attribute("uninitialized_variables", [],
                                              set_to_default=True)
    return found if isinstance(found, list) else None


def _nbytes(variable: Any) -> int:
    """Bytes of a variable's value: Keras names dtypes by their width (``bfloat16``,
    ``float8_e4m3fn``, ``int4``...); ``bool`` and ``string`` count as 1 and 8 per item."""
    width = re.search(r"[0-9]+", str(variable.dtype))
    itemsize = max(1, int(width[0]) // 8) if width else (1 if variable.dtype == "bool" else 8)
    return math.prod(int(d) for d in variable.shape) * itemsize


def stored_bytes(entries: Any, reader: Any) -> int:
    """A bound on the bytes of the values ``entries`` (JSON) describe: the members they name
    (each counted once, read by nobody yet) and every string in them (inline base64 data
    decodes to fewer bytes than it has characters)."""
    members: set[str] = set()
    total = 0
    stack = [entries]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            member = node.get("member")
            if isinstance(member, str):
                members.add(member)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            total += len(node)
    return total + sum(reader.member_size(name) for name in members)


def rebuild(config: Any, deserialize: Callable[[Any], Any], budget: int) -> Any:
    """The Keras model ``config`` describes, rebuilt by ``deserialize`` with its variables
    deferred and bounded by ``budget`` bytes (:func:`stored_bytes`).

    A model's architecture and its compile config (metrics hold variables too: a
    ``MeanIoU(num_classes=n)`` holds n x n) are bounded one after the other, each by
    ``budget`` + :data:`SLACK_BYTES`: the optimizer Keras makes while compiling creates its
    step counter from a constant, which a deferring scope refuses, so compiling cannot
    happen inside one; the optimizer is made first and the rest of the compile config
    deferred. What this does is what ``compile_from_config`` does, with the metrics bounded.
    """
    if _registry() is None or not isinstance(config, dict):
        return deserialize(config)
    compile_config = config.get("compile_config")
    model = _bounded(lambda: deserialize({k: v for k, v in config.items()
                                          if k != "compile_config"}), budget,
                     "the Keras model")
    if not compile_config:
        return model
    if not isinstance(compile_config, dict) or type(model).compile is not keras.Model.compile:
        model.compile_from_config(compile_config)  # a custom compile: Keras warns, skips it
        return model
    optimizer = deserialize(compile_config.get("optimizer"))
    rest = _bounded(lambda: deserialize({k: v for k, v in compile_config.items()
                                         if k != "optimizer"}), budget,
                    "the Keras model's compile config")
    model.compile(optimizer=optimizer, **rest)
    if model.built and getattr(model, "optimizer", None) is not None:
        model.optimizer.build(model.trainable_variables)
    return model


def _bounded(build: Callable[[], Any], budget: int, what: str) -> Any:
    """``build()`` with every variable it creates deferred; refused with a ``FormatError``
    before any is allocated when they need more than ``budget`` + :data:`SLACK_BYTES`."""
    registry = _registry()
    if registry is None:
        return build()
    start = len(registry)
    try:
        with keras.StatelessScope(initialize_variables=False):
            model = build()
        needed = sum(_nbytes(v) for v in registry[start:])
        if needed > budget + SLACK_BYTES:
            raise FormatError(
                f"{what}: its config asks for {needed:,} bytes of variables, but the file "
                f"holds at most {budget:,} bytes of weights; refused before allocating them "
                "(the file was altered or damaged)")
    except BaseException:
        del registry[start:]  # never allocated, never to be
        raise
    with keras.StatelessScope():  # leaving a scope initializes the deferred variables
        pass
    return model
