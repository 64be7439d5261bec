"""Lazy objects: what ``Repo.get`` returns before an object's file is read.

A lazy object is an instance of a private subclass of the object's real class, holding only
where its file is. ``isinstance`` works on it, and ``dry_id`` and ``definition()`` are answered
from the index. The first use of anything else (an attribute, a method that reads state) loads
the file and turns the instance into the real object in place: it takes the loaded object's
state and class, so every reference to it sees the loaded object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import attrs

from dryml._forksafe import ForkSafeLock
from dryml.errors import RepoError

if TYPE_CHECKING:
    from dryml._object import Object
    from dryml._objectdef import ObjectDef

__all__ = ["LazyState", "is_loaded", "load_now", "make_lazy"]

_STATE = "_dry_lazy_state"
_lock = ForkSafeLock(reentrant=True)
_lazy_classes: dict[type, type] = {}
_lazy_metas: dict[type, type] = {}


@attrs.define
class LazyState:
    """Where a lazy object's file is, and what the index knows about it."""

    dry_id: str
    path: str
    cls_path: str
    trust: tuple[str, ...]
    definition: dict[str, Any] | None = None
    repo: Any = None
    #: the configuration digest of the row a query selected (when it did not read the
    #: definition): a first use refuses an object replaced since by other arguments
    cat: str | None = None


def _lazy_meta(meta: type) -> type:
    """A metaclass like ``meta`` whose classes stay out of dryml's class registry."""
    found = _lazy_metas.get(meta)
    if found is None:
        def init(cls: type, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> None:
            type.__init__(cls, name, bases, ns)

        found = _lazy_metas[meta] = type(f"Lazy{meta.__name__}", (meta,), {"__init__": init})
    return found


# What a lazy object answers without reading its file; every other attribute lookup, the
# class's own properties and methods included, loads it first.
_ANSWERED = frozenset({_STATE, "dry_id", "definition", "_dry_real_class"})


def _getattribute(self: Any, name: str) -> Any:
    # __getattr__ alone is not enough: a property of the real class (e.g. a Trainable's
    # ``train_state``, which creates an empty state when ``__dict__`` has none) would run on
    # the empty stand-in and answer silently wrong (``trained`` False for a trained model).
    if name in _ANSWERED or (name.startswith("__") and name.endswith("__")):
        return object.__getattribute__(self, name)
    if _STATE in object.__getattribute__(self, "__dict__"):
        load_now(self)
        return getattr(self, name)  # the real class now answers, its own hooks included
    return object.__getattribute__(self, name)


def _getattr(self: Any, name: str) -> Any:
    if name == _STATE or name.startswith("__"):
        raise AttributeError(name)
    load_now(self)
    return getattr(self, name)


def _setattr(self: Any, name: str, value: Any) -> None:
    load_now(self)
    setattr(self, name, value)


def _delattr(self: Any, name: str) -> None:
    load_now(self)
    delattr(self, name)


def _dry_id(self: Any) -> str:
    return self.__dict__[_STATE].dry_id  # type: ignore[no-any-return]


def _definition(self: Any) -> ObjectDef:
    from dryml._objectdef import ObjectDef

    state: LazyState = self.__dict__[_STATE]
    if state.definition is None and state.repo is not None:
        state.definition = state.repo._definition_json(state.dry_id)
    if state.definition is None:
        return load_now(self).definition()
    return ObjectDef.from_dict(state.definition, trust=state.trust)


def _reduce_ex(self: Any, protocol: Any) -> Any:
    # Pickling (e.g. to send to a worker process) sends the loaded object.
    return load_now(self).__reduce_ex__(protocol)


def _repr(self: Any) -> str:
    state: LazyState = self.__dict__[_STATE]
    return f"<{type(self).__qualname__} {state.dry_id!r} (not loaded yet)>"


def _lazy_class(cls: type) -> type:
    found = _lazy_classes.get(cls)
    if found is None:
        namespace = {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            "__getattribute__": _getattribute, "__getattr__": _getattr,
            "__setattr__": _setattr, "__delattr__": _delattr,
            "__repr__": _repr, "__reduce_ex__": _reduce_ex, "dry_id": property(_dry_id),
            "definition": _definition,
            "_dry_real_class": cls,
        }
        found = _lazy_classes[cls] = _lazy_meta(type(cls))(cls.__name__, (cls,), namespace)
    return found


def make_lazy(cls: type[Object], state: LazyState) -> Object:
    """An unloaded stand-in of class ``cls`` for the object ``state`` describes."""
    with _lock:
        lazy = _lazy_class(cls)
    obj: Any = object.__new__(lazy)
    obj.__dict__[_STATE] = state
    return cast("Object", obj)


def lazy_state(obj: Any) -> LazyState | None:
    """The record of a lazy object not loaded yet, else None."""
    state = obj.__dict__.get(_STATE)
    return state if isinstance(state, LazyState) and not is_loaded(obj) else None


def is_loaded(obj: Any) -> bool:
    """Whether ``obj`` is a real object (not a lazy stand-in waiting for its file)."""
    return _STATE not in getattr(obj, "__dict__", {})


def load_now(obj: Any) -> Object:
    """Load a lazy object's file now (no-op for loaded objects); returns ``obj`` itself."""
    from dryml._io import load_object

    with _lock:
        state = obj.__dict__.get(_STATE)
        if state is None:
            return obj  # type: ignore[no-any-return]
        # (a real class here: a child forked in the middle of the swap below; loaded again)
        real_cls = getattr(type(obj), "_dry_real_class", type(obj))
        try:
            if state.repo is not None:  # checks that the file is still the one indexed
                loaded = state.repo._load_file(state.dry_id, state, obj)
            else:
                loaded = load_object(state.path, trust=state.trust)
        except FileNotFoundError:
            raise RepoError(f"the file of object {state.dry_id!r} ({state.path}) is gone; run "
                            "'dryml repo check' on the repository") from None
        if type(loaded) is not real_cls or loaded.dry_id != state.dry_id:
            raise RepoError(f"{state.path} holds {type(loaded).__qualname__} "
                            f"{loaded.dry_id!r}, not the indexed {real_cls.__qualname__} "
                            f"{state.dry_id!r}; run 'dryml repo reindex' on the repository")
        # Each step leaves a whole object, should another thread fork at any point between
        # them (the child gets this lock unlocked): the stand-in with the loaded state beside
        # its record, then the real class with the record still there (is_loaded is False,
        # so a child that uses it loads it again), then the loaded object. Never a real class
        # over an empty __dict__, which a child would take for loaded.
        swapped = dict(loaded.__dict__)
        swapped[_STATE] = state
        object.__setattr__(obj, "__dict__", swapped)
        object.__setattr__(obj, "__class__", real_cls)
        del swapped[_STATE]
        return obj  # type: ignore[no-any-return]
