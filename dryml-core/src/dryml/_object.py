"""``Object``: a class whose instances remember the arguments they were built from."""

from __future__ import annotations

import abc
import uuid
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

from dryml._forksafe import ForkSafeLock
from dryml._values import capture_call, shared_repr
from dryml.errors import ArgumentError

if TYPE_CHECKING:
    from dryml._objectdef import ObjectDef
    from dryml.format import LoadStore, SaveStore

__all__ = ["Object", "ObjectMeta", "class_registry"]

# Every Object subclass that exists in this process, by "module:QualName". Looking a class up
# here is always safe (it is already imported and is an Object), and it finds classes defined
# inside functions, which no import path reaches.
_classes: weakref.WeakValueDictionary[str, type[Object]] = weakref.WeakValueDictionary()
_classes_lock = ForkSafeLock()


def class_registry() -> weakref.WeakValueDictionary[str, type[Object]]:
    """The live registry of Object subclasses by ``"module:QualName"``."""
    return _classes


#: ``__init__`` parameter names dryml keeps for itself, and why.
_RESERVED = {
    "dry_id": "it gives every object its id itself, read it as self.dry_id, and never passes "
              "dry_id to __init__",
    "dry_mut": "a class attribute that says whether objects hold state beyond their "
               "arguments; ObjectDef(..., dry_mut=...) takes it as its own flag, so the argument "
               "could never reach __init__ through a definition",
}


class ObjectMeta(abc.ABCMeta):
    """Captures constructor arguments before ``__init__`` runs; users never call it."""

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> None:
        super().__init__(name, bases, namespace)
        init = namespace.get("__init__")
        code = getattr(init, "__code__", None)
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount] if code else ()
        for reserved in _RESERVED:
            if reserved in names:
                raise ArgumentError(
                    f"{cls.__qualname__}.__init__ takes a parameter named {reserved}, which "
                    f"dryml reserves ({_RESERVED[reserved]}); rename the parameter")
        with _classes_lock:
            _classes[f"{cls.__module__}:{cls.__qualname__}"] = cls  # type: ignore[assignment]

    def __call__(cls, /, *args: Any, dry_id: str | None = None, **kwargs: Any) -> Any:
        if "dry_mut" in kwargs:
            raise ArgumentError(
                f"{cls.__qualname__}: dry_mut is not an argument of objects but a class "
                "attribute (dry_mut = True in the class body of classes whose objects hold "
                "state beyond their arguments)")
        if dry_id is None:
            dry_id = str(uuid.uuid4())
        elif type(dry_id) is not str or not dry_id:
            raise ArgumentError(
                f"{cls.__qualname__}: dry_id must be a non-empty str, got {dry_id!r}"
            )
        dry_args, dry_kwargs = capture_call(args, kwargs, cls.__qualname__)
        dry_kwargs["dry_id"] = dry_id
        obj: Any = cls.__new__(cls)  # type: ignore[call-arg, arg-type]
        obj.__dict__["_dry_args"] = dry_args
        obj.__dict__["_dry_kwargs"] = dry_kwargs
        obj.__init__(*args, **kwargs)
        return obj


class Object(metaclass=ObjectMeta):
    """Base class of everything dryml can define, save, load, select and rebuild.

    Subclasses write an ordinary ``__init__``; the arguments a caller passes are recorded in
    :attr:`dry_args` and :attr:`dry_kwargs` (with a ``dry_id``), whether or not ``__init__``
    calls ``super().__init__``.

    >>> class Data(Object):
    ...     def __init__(self, data):
    ...         self.data = data
    >>> d = Data([1, 2, 3], dry_id="d1")
    >>> d.dry_args, d.dry_kwargs
    (([1, 2, 3],), {'dry_id': 'd1'})

    State beyond the arguments is saved by ``save_object_imp(self, store)`` and restored by
    ``load_object_imp(self, store)``; every class in the MRO that defines them is called, base
    class first.
    """

    #: True when instances change after construction (trained models), so two objects built
    #: from one definition may hold different state.
    dry_mut: ClassVar[bool] = False
    #: The framework whose compute context this class needs ("default": none).
    dry_framework: ClassVar[str] = "default"

    _dry_args: tuple[Any, ...]
    _dry_kwargs: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Accept and ignore anything, so subclasses may call ``super().__init__(...)``."""

    @property
    def dry_args(self) -> tuple[Any, ...]:
        """The positional arguments the caller passed (treat as read-only)."""
        return self._dry_args

    @property
    def dry_kwargs(self) -> dict[str, Any]:
        """The keyword arguments the caller passed, plus ``dry_id`` (a copy)."""
        return dict(self._dry_kwargs)

    @property
    def dry_id(self) -> str:
        """The unique id of this object (a uuid4 string unless the caller gave one)."""
        return str(self._dry_kwargs["dry_id"])

    def definition(self) -> ObjectDef:
        """A fresh :class:`ObjectDef` that builds a copy of this object (same ``dry_id``).

        Nested Objects become nested ObjectDefs; mutating the result never changes ``self``.
        """
        from dryml._objectdef import ObjectDef

        return ObjectDef.from_object(self)

    def save_self(self, path: Any, **kwargs: Any) -> bool:
        """Save this object to ``path`` (a path or a binary file); see :func:`save_object`."""
        from dryml._io import save_object

        return save_object(self, path, **kwargs)

    def save_object_imp(self, store: SaveStore) -> None:
        """Save state beyond the constructor arguments into ``store`` (override)."""

    def load_object_imp(self, store: LoadStore) -> None:
        """Restore state saved by :meth:`save_object_imp` from ``store`` (override)."""

    # The compute lifecycle (see dryml.context): inside a worker, an Object enters compute
    # mode before a call uses it and leaves it after; each hook of every class in the MRO runs,
    # base class first. Framework state (a network on a GPU) belongs here, so an Object can be
    # described, saved and selected without touching a device.
    def compute_prepare_imp(self) -> None:
        """Prepare to enter compute mode (override)."""

    def load_compute_imp(self) -> None:
        """Build framework state when entering compute mode (override)."""

    def save_compute_imp(self) -> None:
        """Move framework state back into saveable form when leaving compute mode (override)."""

    def compute_cleanup_imp(self) -> None:
        """Release framework resources after leaving compute mode (override)."""

    def __repr__(self) -> str:
        # A child shared by several arguments is written out the first time only.
        return shared_repr(self, lambda: repr({
            "cls": type(self),
            "dry_mut": type(self).dry_mut,
            "dry_args": self._dry_args,
            "dry_kwargs": self._dry_kwargs,
        }), lambda: f"<{type(self).__qualname__} {self._dry_kwargs.get('dry_id')!r}, as above>")
