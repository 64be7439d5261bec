"""The compute lifecycle of Objects inside a worker.

An Object is described, saved and selected without touching a framework. When it enters
compute mode inside a context, every class in its MRO that defines them runs, base class first:
``compute_prepare_imp(self)`` then ``load_compute_imp(self)``; when it leaves,
``save_compute_imp(self)`` then ``compute_cleanup_imp(self)``. Contained Objects enter before
the Objects holding them and leave after them.
"""

from __future__ import annotations

import collections
import functools
import types
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from dryml._object import Object

__all__ = ["enter_compute", "in_compute_mode", "iter_objects",
           "leave_compute"]

_FLAG = "_dry_compute_active"
_ENTER = ("compute_prepare_imp", "load_compute_imp")
_LEAVE = ("save_compute_imp", "compute_cleanup_imp")


def _children(value: Any) -> Sequence[Any]:
    """What ``value`` holds that may be or hold an Object, in order."""
    if isinstance(value, Object):
        return (*value.dry_args, *value._dry_kwargs.values())
    if isinstance(value, (list, tuple, collections.deque)):
        return value
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, functools.partial):
        return (value.func, *value.args, *value.keywords.values())
    return _attributes(value)


#: Values whose attributes are never looked into: what pickle sends by name (classes,
#: modules, functions), atoms, weak references (which pickle refuses), and numpy's arrays and
#: numbers (a list of a million numpy floats is walked as fast as one of floats).
_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
           types.MethodType, str, bytes, bytearray, int, float, complex, bool, type(None),
           weakref.ref, *weakref.ProxyTypes, np.ndarray, np.generic)


@functools.lru_cache(maxsize=1024)
def _slot_names(cls: type) -> tuple[str, ...]:
    """The attribute names of ``cls``'s ``__slots__`` (its bases' too), private ones
    mangled as Python stores them (``__m`` of class ``C``: ``_C__m``)."""
    names = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{name}"
            names.append(name)
    return tuple(names)


def _attributes(value: Any) -> list[Any]:
    """The attribute values of a plain instance (a dataclass, an experiment record): what
    pickle sends of it, so that an Object it holds is found here as a worker finds it."""
    found: list[Any] = []
    try:  # any object may be passed: a dead weakref.proxy raises ReferenceError here
        attrs = getattr(value, "__dict__", None)
        if type(attrs) is dict:
            found += attrs.values()
        for name in _slot_names(type(value)):  # type: ignore[arg-type]  # classes hash
            item = getattr(value, name, _UNSET)
            if item is not _UNSET:
                found.append(item)
    except Exception:  # noqa: BLE001 - what cannot be looked into holds nothing found here
        return []
    return found


_UNSET = object()


def iter_objects(values: Iterable[Any]) -> Iterator[Object]:
    """Every Object in ``values`` and in their arguments, contained ones first, each once.
    Objects held by other instances (a dataclass, a record of an experiment) are found too, as
    a worker finds them when the call's arguments reach it: a model in a dataclass was left
    out of the call's requirement (a torch model ran in the framework-free context) and of
    compute mode. Walked with a stack of its own: a chain of a thousand instances, each
    holding the next, is no RecursionError."""
    seen: set[int] = set()
    stack: list[Any] = list(values)[::-1]
    while stack:
        node = stack.pop()
        if type(node) is _Done:  # every value an Object holds was walked: the Object next
            yield node.obj
            continue
        if issubclass(type(node), _OPAQUE) or id(node) in seen:  # type(): a dead proxy
            continue
        seen.add(id(node))
        if isinstance(node, Object):
            stack.append(_Done(node))
        stack.extend(reversed(_children(node)))


class _Done:
    """On :func:`iter_objects`' stack: the Object to give once what it holds is given."""

    __slots__ = ("obj",)

    def __init__(self, obj: Object) -> None:
        self.obj = obj


def _hook_chain(cls: type, name: str) -> list[Any]:
    return [klass.__dict__[name] for klass in reversed(cls.__mro__) if name in klass.__dict__]


def _run(obj: Object, names: tuple[str, ...]) -> None:
    for name in names:
        for hook in _hook_chain(type(obj), name):
            try:
                hook(obj)
            except Exception as exc:
                exc.add_note(f"while running {name} of {type(obj).__qualname__} {obj.dry_id!r}")
                raise


def in_compute_mode(obj: Object) -> bool:
    """Whether ``obj`` is in compute mode in this process."""
    return bool(obj.__dict__.get(_FLAG))


def enter_compute(values: Iterable[Any]) -> list[Object]:
    """Put every Object among ``values`` into compute mode; returns those that entered."""
    entered = []
    for obj in iter_objects(values):
        if in_compute_mode(obj):
            continue
        _run(obj, _ENTER)
        obj.__dict__[_FLAG] = True
        entered.append(obj)
    return entered


def leave_compute(objs: Iterable[Object]) -> None:
    """Take Objects (as returned by :func:`enter_compute`) out of compute mode, holders first."""
    for obj in reversed(list(objs)):
        if in_compute_mode(obj):
            try:
                _run(obj, _LEAVE)
            finally:
                obj.__dict__.pop(_FLAG, None)
