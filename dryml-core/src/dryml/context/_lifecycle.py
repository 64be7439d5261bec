"""The compute lifecycle of Objects inside a worker.

An Object is described, saved and selected without touching a framework. When it enters
compute mode inside a context, every class in its MRO that defines them runs, base class first:
``compute_prepare_imp(self)`` then ``load_compute_imp(self)``; when it leaves,
``save_compute_imp(self)`` then ``compute_cleanup_imp(self)``. Contained Objects enter before
the Objects holding them and leave after them.
"""

from __future__ import annotations

import types
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from dryml._object import Object

__all__ = ["enter_compute", "in_compute_mode", "iter_objects",
           "leave_compute"]

_FLAG = "_dry_compute_active"
_ENTER = ("compute_prepare_imp", "load_compute_imp")
_LEAVE = ("save_compute_imp", "compute_cleanup_imp")


def _children(value: Any) -> Iterator[Any]:
    if isinstance(value, Object):
        yield from value.dry_args
        yield from value._dry_kwargs.values()
    elif isinstance(value, dict):
        yield from value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        yield from value
    else:
        yield from _attributes(value)


#: Values whose attributes are never looked into: what pickle sends by name (classes,
#: modules, functions), atoms, weak references (which pickle refuses), and numpy's arrays and
#: numbers (a list of a million numpy floats is walked as fast as one of floats).
_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
           types.MethodType, str, bytes, bytearray, int, float, complex, bool, type(None),
           weakref.ref, *weakref.ProxyTypes, np.ndarray, np.generic)


def _attributes(value: Any) -> Iterator[Any]:
    """The attribute values of a plain instance (a dataclass, an experiment record): what
    pickle sends of it, so that an Object it holds is found here as a worker finds it."""
    found: list[Any] = []
    try:  # any object may be passed: a dead weakref.proxy raises ReferenceError here
        attrs = getattr(value, "__dict__", None)
        if type(attrs) is dict:
            found += attrs.values()
        for cls in type(value).__mro__:
            slots = cls.__dict__.get("__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if name not in ("__dict__", "__weakref__"):
                    item = getattr(value, name, _UNSET)
                    if item is not _UNSET:
                        found.append(item)
    except Exception:  # noqa: BLE001 - what cannot be looked into holds nothing found here
        return iter(())
    return iter(found)


_UNSET = object()


def iter_objects(values: Iterable[Any]) -> Iterator[Object]:
    """Every Object in ``values`` and in their arguments, contained ones first, each once.
    Objects held by other instances (a dataclass, a record of an experiment) are found too, as
    a worker finds them when the call's arguments reach it: a model in a dataclass was left
    out of the call's requirement (a torch model ran in the framework-free context) and of
    compute mode."""
    seen: set[int] = set()

    def walk(value: Any) -> Iterator[Object]:
        if id(value) in seen or issubclass(type(value), _OPAQUE):  # type(): a dead proxy
            return
        seen.add(id(value))
        for child in _children(value):
            yield from walk(child)
        if isinstance(value, Object):
            yield value

    for value in values:
        yield from walk(value)


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
