"""Checks of numpy random generator states read from a file, before numpy sees them.

numpy's bit generators trust the state they are given: an ``MT19937`` position past its key,
or a ``Philox`` buffer position past its buffer, reads outside the generator's memory at the
first draw and can crash the process. Backends that restore generators from a file (skops'
``RandomState`` and ``Generator`` in dryml-sklearn, an XGBoost model's ``random_state`` in
dryml-xgboost) check each state with :func:`check_bit_generator_state` first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dryml.errors import FormatError

__all__ = ["BIT_GENERATORS", "check_bit_generator_state"]

_MT_KEY = 624
#: The bit generators whose states are checked field by field (numpy's own).
BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")


def check_bit_generator_state(state: Any, legacy: bool = False) -> str:
    """The bit generator's name when ``state`` is one numpy writes (``bit_generator.state``,
    or with ``legacy`` a ``RandomState``'s ``get_state(legacy=False)``, which adds the cached
    Gaussian), else FormatError."""
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
        raise _bad(state)
    name, inner = state.get("bit_generator"), state["state"]
    keys = set(state) - {"bit_generator", "state"}
    counters = {"has_uint32", "uinteger"}
    if legacy:
        ok = (name == "MT19937" and keys == {"has_gauss", "gauss"}
              and _int(state["has_gauss"], 0, 2) and isinstance(state["gauss"], float | int)
              and _mt19937(inner))
    elif name == "MT19937":
        ok = not keys and _mt19937(inner)
    elif name in ("PCG64", "PCG64DXSM"):
        ok = (keys == counters and _counters(state) and set(inner) == {"state", "inc"}
              and all(_int(inner[k], 0, 2**128) for k in ("state", "inc")))
    elif name == "Philox":
        ok = (keys == {"buffer", "buffer_pos", *counters} and _counters(state)
              and set(inner) == {"counter", "key"} and _words(inner["counter"], 4)
              and _words(inner["key"], 2) and _words(state["buffer"], 4)
              and _int(state["buffer_pos"], 0, 5))
    elif name == "SFC64":
        ok = (keys == counters and _counters(state) and set(inner) == {"state"}
              and _words(inner["state"], 4))
    else:
        ok = False
    if not ok:
        raise _bad(state)
    return str(name)


def _bad(state: Any) -> FormatError:
    name = state.get("bit_generator") if isinstance(state, dict) else None
    what = f"{name} " if isinstance(name, str) and name.isidentifier() else ""
    return FormatError(f"a numpy {what}random generator state in the file is not one numpy "
                       "writes: the file was altered")


def _mt19937(inner: dict[str, Any]) -> bool:
    return (set(inner) == {"key", "pos"} and _words(inner["key"], _MT_KEY, np.uint32)
            and _int(inner["pos"], 0, _MT_KEY + 1))


def _counters(state: dict[str, Any]) -> bool:
    return _int(state["has_uint32"], 0, 2) and _int(state["uinteger"], 0, 2**32)


def _words(value: Any, count: int, dtype: type = np.uint64) -> bool:
    """A 1-d numpy array of ``count`` elements of ``dtype``."""
    return (isinstance(value, np.ndarray) and value.dtype == dtype
            and value.shape == (count,))


def _int(value: Any, low: int, high: int) -> bool:
    """An int (Python or numpy, not bool) in ``[low, high)``."""
    if isinstance(value, np.integer):
        value = int(value)
    return type(value) is int and low <= value < high
