"""Constructor-argument values: checking at construction, copying, equality.

Allowed values: None, bool, int, float, str, bytes, list, tuple, dict, Objects, ObjectDefs,
classes (by import path), and any type a plugin registers an argument codec for (core registers
numpy arrays and scalars that way). Anything else is refused at construction with the path of
the offending value, e.g. ``dry_kwargs['opt'][2]``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from dryml import _registry
from dryml._encoding import TAG
from dryml.errors import ArgumentError

__all__ = ["ATOMS", "BadValue", "capture", "copy_value", "shared_repr", "values_equal"]

ATOMS: frozenset[type] = frozenset({type(None), bool, int, float, str, bytes})


class BadValue(Exception):
    """Internal: carries the path of a refused value up to where it can be named."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


def _is_object(value: Any) -> bool:
    from dryml._object import Object
    from dryml._objectdef import ObjectDef

    return isinstance(value, (Object, ObjectDef))


def check_class(value: type) -> None:
    """A class is allowed when it can be found again by its import path."""
    from dryml._object import Object

    if issubclass(value, Object):
        return
    if "<locals>" in value.__qualname__:
        raise BadValue(
            f"the class {value.__qualname__} is defined inside a function, so it cannot be "
            "found again by its import path; define it at module level"
        )


#: lists, tuples and dicts nested deeper than this in one argument are refused: a reader
#: rebuilding one needs several Python frames a level, and about 330 levels already exceeded
#: the default recursion limit, so such a file saved but could not be loaded
MAX_DEPTH = 100

_state = threading.local()


@contextlib.contextmanager
def rebuilding() -> Iterator[None]:
    """Objects constructed inside the block are rebuilt from a file: the checks that only
    guard what a new file will hold (nesting depth, Objects as dict keys) are skipped, so a
    file an earlier dryml wrote loads as it did."""
    before = getattr(_state, "rebuilding", False)
    _state.rebuilding = True
    try:
        yield
    finally:
        _state.rebuilding = before


def _strict() -> bool:
    return not getattr(_state, "rebuilding", False)


def _holds_object(key: Any) -> bool:
    return _is_object(key) or (type(key) is tuple and any(_holds_object(k) for k in key))


def capture(value: Any, copy: bool = True, depth: int = 0) -> Any:
    """Check ``value`` and return an independent copy of it.

    Objects and ObjectDefs are kept by reference (that is what lets shared children stay
    shared). numpy arrays are copied, in their layout (kept by reference, an
    array that ``__init__``, training or the caller changed in place later rewrote the
    recorded call, the definition and the saved file, and a loaded object differed from the
    live one), except a ``numpy.memmap`` (a file's data, saved streaming). Other codec values
    (a backend's tensors) are kept by reference, their layout as given. ``copy=False`` only
    checks (a value put in a store is encoded at once).
    """
    tp = type(value)
    if tp is int and _too_long(value):
        # accepted here, it would then fail to save with a bare ValueError
        # (Python converts ints of more than 4300 digits to text only when asked to)
        digits = int(value.bit_length() * 0.30103) + 1  # str() itself fails for such ints
        raise BadValue(f"an int of about {digits} digits is too large to record as JSON; "
                       "pass it as a str, or keep it as state")
    if tp in ATOMS:
        return value
    if tp in (list, tuple, dict) and depth >= MAX_DEPTH and _strict():
        raise BadValue(f"lists, tuples and dicts are nested more than {MAX_DEPTH} deep here; "
                       "a file holding them could not be read back: keep such data as state "
                       "(save_object_imp) or flatten it")
    if tp is list:
        return [_capture_item(v, i, copy, depth + 1) for i, v in enumerate(value)]
    if tp is tuple:
        return tuple([_capture_item(v, i, copy, depth + 1) for i, v in enumerate(value)])
    if tp is dict:
        out = {}
        for key, item in value.items():
            if _holds_object(key) and _strict():
                raise BadValue(f"a dict key ({type(key).__name__}) holds an Object or "
                               "ObjectDef, which would not come back as the same key (a "
                               "loaded file builds a new one); key by its dry_id or a name")
            try:
                key = capture(key, copy, depth + 1)
                hash(key)
            except (BadValue, TypeError) as exc:
                raise BadValue(f"the dict key {key!r} is not allowed: {exc}") from None
            out[key] = _capture_item(item, key, copy, depth + 1)
        return out
    if isinstance(value, type):
        check_class(value)
        return value
    if _is_object(value):
        return value
    codec = _registry.arg_codec_for(tp)
    if codec is None:
        raise BadValue(
            f"values of type {tp.__module__}.{tp.__qualname__} cannot be recorded; use None, "
            "bool, int, float, str, bytes, list, tuple, dict, numpy arrays, Objects, ObjectDefs, "
            "classes, or install the backend whose argument codec handles this type"
        )
    try:
        codec.impl.check(value)
    except ValueError as exc:
        raise BadValue(str(exc)) from None
    return codec.impl.copy(value) if copy and _copied(value) else value


def _copied(value: Any) -> bool:
    """Whether a codec value is recorded as a copy: a numpy array that is not a memmap (a
    file's data, perhaps larger than memory, which saves streaming from the file)."""
    import numpy as np

    return isinstance(value, np.ndarray) and not isinstance(value, np.memmap)


#: Python's default ``sys.get_int_max_str_digits()``: a reader with the default settings
#: cannot read a longer int from a file's JSON
MAX_INT_DIGITS = 4300


def _too_long(value: int) -> bool:
    """Whether ``value`` has more digits than a file may hold (JSON holds ints as text):
    :data:`MAX_INT_DIGITS`, or fewer where this process lowered its own limit. A process that
    raised it (or set no limit) still writes files that every default reader can read."""
    import sys

    limit = getattr(sys, "get_int_max_str_digits", lambda: 0)() or MAX_INT_DIGITS
    limit = min(limit, MAX_INT_DIGITS)
    return value.bit_length() > 3.32 * limit - 4 and abs(value) >= 10**limit


def _capture_item(value: Any, key: Any, copy: bool = True, depth: int = 0) -> Any:
    try:
        return capture(value, copy, depth)
    except BadValue as exc:
        exc.path.insert(0, f"[{key!r}]")
        raise


def capture_call(args: tuple[Any, ...], kwargs: dict[str, Any], where: str) -> tuple[
    tuple[Any, ...], dict[str, Any]
]:
    """Capture constructor arguments; ArgumentError names the bad one (``dry_args[1]['x']``)."""
    if TAG in kwargs:  # the kwargs are written as a JSON object, where the tag is the format's
        raise ArgumentError(f"{where}: a keyword argument cannot be named {TAG!r}, the file "
                            "format's own tag (it would load as an encoded value)")
    try:
        captured_args = tuple([_capture_item(v, i) for i, v in enumerate(args)])
    except BadValue as exc:
        raise ArgumentError(f"{where}: dry_args{_path(exc.path)}: {exc.reason}") from None
    try:
        captured_kwargs = {k: _capture_item(v, k) for k, v in kwargs.items()}
    except BadValue as exc:
        raise ArgumentError(f"{where}: dry_kwargs{_path(exc.path)}: {exc.reason}") from None
    return captured_args, captured_kwargs


def _path(parts: list[str]) -> str:
    """``[0]['x']``; a long one (a value nested 100 deep) with its middle left out."""
    if len(parts) <= 12:
        return "".join(parts)
    return f"{''.join(parts[:6])}...({len(parts) - 9} more)...{''.join(parts[-3:])}"


def copy_value(value: Any, on_object: Any) -> Any:
    """Deep-copy an argument value; Objects and ObjectDefs go through ``on_object``."""
    tp = type(value)
    if tp in ATOMS or isinstance(value, type):
        return value
    if tp is list:
        return [copy_value(v, on_object) for v in value]
    if tp is tuple:
        return tuple([copy_value(v, on_object) for v in value])
    if tp is dict:
        return {k: copy_value(v, on_object) for k, v in value.items()}
    if _is_object(value):
        return on_object(value)
    codec = _registry.arg_codec_for(tp)
    return codec.impl.copy(value) if codec is not None else value


def values_equal(a: Any, b: Any) -> bool:
    """Structural equality of argument values (arrays compare by dtype, shape and content)."""
    ta, tb = type(a), type(b)
    if ta is not tb:
        return False
    if ta in ATOMS or isinstance(a, type):
        return bool(a == b) or (ta is float and a != a and b != b)
    if ta is list or ta is tuple:
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    if ta is dict:
        if a.keys() != b.keys():
            return False
        # keys equal as Python keys may still differ as values: {True: 1} and {1: 1}
        b_keys = {k: k for k in b}
        return all(values_equal(k, b_keys[k]) and values_equal(a[k], b[k]) for k in a)
    codec = _registry.arg_codec_for(ta)
    if codec is not None:
        return bool(codec.impl.equal(a, b))
    return bool(a == b)


_repr_state = threading.local()


def shared_repr(node: object, full: Callable[[], str], short: Callable[[], str]) -> str:
    """``full()`` the first time one repr meets ``node``, ``short()`` each time after.

    A shared child is written out once: a chain of objects each holding the next twice made
    the plain repr 2**depth long (a 2 KB file loaded into an object whose repr never ended).
    """
    seen: set[int] | None = getattr(_repr_state, "seen", None)
    top = seen is None
    if seen is None:
        seen = _repr_state.seen = set()
    try:
        if id(node) in seen:
            return short()
        seen.add(id(node))
        return full()
    finally:
        if top:
            _repr_state.seen = None
