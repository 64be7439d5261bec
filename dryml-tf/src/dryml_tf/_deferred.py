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
import warnings
from collections.abc import Callable
from typing import Any

import keras

from dryml.errors import FormatError

__all__ = ["MAX_STATEFUL_BATCH", "SLACK_BYTES", "rebuild", "stored_bytes"]

#: The largest fixed batch size a stateful layer (an RNN keeping its states between
#: batches, which Keras allocates for each example of the batch) may have in a file.
MAX_STATEFUL_BATCH = 65536
# What Keras says when a layer makes a variable from a value inside a deferring scope.
_STATELESS_REFUSAL = "create a variable while in a stateless scope"
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
    deferred. What this does is what ``compile_from_config`` does, with the metrics bounded,
    except that the optimizer is left unbuilt: the caller builds it when the file holds a
    built one's state (an untrained model's optimizer was saved unbuilt).
    """
    if _registry() is None or not isinstance(config, dict):
        return deserialize(config)
    compile_config = config.get("compile_config")
    architecture = {k: v for k, v in config.items() if k != "compile_config"}
    try:
        model = _bounded(lambda: deserialize(architecture), budget, "the Keras model")
    except _MadeFromValue:
        model = _rebuild_stateful(architecture, deserialize, budget)
    if not compile_config:
        return model
    own = (type(model).compile is not keras.Model.compile
           or type(model).compile_from_config is not keras.Model.compile_from_config)
    if not isinstance(compile_config, dict) or own:
        # a model's own compile or compile_from_config runs, as Keras' loader runs it (done
        # here, one that set AdamW's exclude_from_weight_decay was skipped and training on
        # after a load differed); its metrics are bounded first, on a copy never allocated
        if isinstance(compile_config, dict) and \
                type(model).compile_from_config is not keras.Model.compile_from_config:
            _bounded(lambda: deserialize({k: v for k, v in compile_config.items()
                                          if k != "optimizer"}), budget,
                     "the Keras model's compile config", keep=False)
        with warnings.catch_warnings():  # a custom compile: Keras skips it (the caller says)
            warnings.filterwarnings("ignore", message=".*compile.*", category=UserWarning)
            model.compile_from_config(compile_config)
        return model
    optimizer = deserialize(compile_config.get("optimizer"))
    rest = _bounded(lambda: deserialize({k: v for k, v in compile_config.items()
                                         if k != "optimizer"}), budget,
                    "the Keras model's compile config")
    model.compile(optimizer=optimizer, **rest)
    return model


class _MadeFromValue(Exception):
    """A layer made a variable from a value, which a deferring scope refuses."""


def _rebuild_stateful(architecture: dict[str, Any], deserialize: Callable[[Any], Any],
                      budget: int) -> Any:
    """A model whose layers make variables from values (a stateful RNN's states, made from
    zeros of the batch size): its weights are bounded on a copy with every layer stateless,
    its fixed batch size by :data:`MAX_STATEFUL_BATCH`, then it is rebuilt as it is."""
    _bounded(lambda: deserialize(_without_state(architecture)), budget, "the Keras model",
             keep=False)
    batch = _largest_batch(architecture)
    if batch > MAX_STATEFUL_BATCH:
        raise FormatError(f"the Keras model: a stateful layer's batch size {batch:,} is over "
                          f"{MAX_STATEFUL_BATCH:,} (its states would be allocated for every "
                          "example of that batch); refused before allocating them")
    return deserialize(architecture)


def _without_state(node: Any) -> Any:
    """``node`` (a Keras config) with every ``"stateful": true`` made false."""
    if isinstance(node, dict):
        return {k: (False if k == "stateful" and v is True else _without_state(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_without_state(v) for v in node]
    return node


def _largest_batch(node: Any) -> int:
    """The largest fixed batch size a Keras config gives an input (0 when none is fixed)."""
    found = 0
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key in ("batch_shape", "batch_input_shape"):
                shape = item.get(key)
                if isinstance(shape, list) and shape and type(shape[0]) is int:
                    found = max(found, shape[0])
            if type(item.get("batch_size")) is int:
                found = max(found, item["batch_size"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _bounded(build: Callable[[], Any], budget: int, what: str, keep: bool = True) -> Any:
    """``build()`` with every variable it creates deferred; refused with a ``FormatError``
    before any is allocated when they need more than ``budget`` + :data:`SLACK_BYTES`.
    ``keep=False``: only the check (what was built is dropped, never allocated)."""
    registry = _registry()
    if registry is None:
        return build()
    start = len(registry)
    try:
        with keras.StatelessScope(initialize_variables=False):
            try:
                model = build()
            except FormatError as exc:
                if _STATELESS_REFUSAL in str(exc):
                    raise _MadeFromValue from exc
                raise
        needed = sum(_nbytes(v) for v in registry[start:])
        if needed > budget + SLACK_BYTES:
            raise FormatError(
                f"{what}: its config asks for {needed:,} bytes of variables, but the file "
                f"holds at most {budget:,} bytes of weights; refused before allocating them "
                "(the file was altered or damaged)")
    except BaseException:
        del registry[start:]  # never allocated, never to be
        raise
    if not keep:
        del registry[start:]
        return None
    with keras.StatelessScope():  # leaving a scope initializes the deferred variables
        pass
    return model
