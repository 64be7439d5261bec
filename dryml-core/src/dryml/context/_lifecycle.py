"""The compute lifecycle of Objects inside a worker.

An Object is described, saved and selected without touching a framework. When it enters
compute mode inside a context, every class in its MRO that defines them runs, base class first:
``compute_prepare_imp(self)`` then ``load_compute_imp(self)``; when it leaves,
``save_compute_imp(self)`` then ``compute_cleanup_imp(self)``. Contained Objects enter before
the Objects holding them and leave after them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

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


def iter_objects(values: Iterable[Any]) -> Iterator[Object]:
    """Every Object in ``values`` and in their arguments, contained ones first, each once."""
    seen: set[int] = set()

    def walk(value: Any) -> Iterator[Object]:
        if id(value) in seen:
            return
        if isinstance(value, (Object, dict, list, tuple, set, frozenset)):
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
