"""``ObjectDef``: a definition that builds Objects, compares structurally, and is plain JSON."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from dryml._values import capture_call, copy_value, shared_repr, values_equal
from dryml.errors import ArgumentError, DefinitionTooLargeError

if TYPE_CHECKING:
    from dryml._object import Object

__all__ = ["MAX_DEFINITION_NODES", "ObjectDef", "iter_defs"]

#: The most nested definitions that ``obj.definition()`` or ``ObjectDef.copy()`` makes,
#: counting a shared object once for every place it is used (a definition is a tree: each
#: use is written out in full). Far beyond any real model, and reached in under a second. A
#: chain of objects each holding the next twice is 2**depth definitions: from a 2 KB file,
#: ``definition()`` (and so ``Repo.add_object``) never returned.
MAX_DEFINITION_NODES = 65_536


class ObjectDef:
    """How to build an Object: its class and constructor arguments.

    >>> from dryml import Object
    >>> class Point(Object):
    ...     def __init__(self, x, y=0):
    ...         self.x, self.y = x, y
    >>> d = ObjectDef(Point, 1, y=2)
    >>> p = d.build()
    >>> (p.x, p.y, p.dry_args)
    (1, 2, (1,))

    Without a ``dry_id`` every ``build()`` makes a new object with a fresh id; with one, the
    object gets that id. Within one ``build()``, nested definitions sharing a ``dry_id`` build
    one shared instance.
    """

    __slots__ = ("_args", "_cls", "_kwargs", "_mut")
    __hash__ = None  # type: ignore[assignment]  # mutable, structural equality

    def __init__(self, cls: type[Object], /, *args: Any, dry_mut: bool | None = None,
                 **kwargs: Any) -> None:
        from dryml._object import Object

        if not (isinstance(cls, type) and issubclass(cls, Object)):
            raise ArgumentError(f"ObjectDef needs a dryml.Object subclass, got {cls!r}")
        if dry_mut is not None and type(dry_mut) is not bool:  # bool("false") is True
            raise ArgumentError(f"ObjectDef({cls.__qualname__}): dry_mut must be True, False "
                                f"or None (the class's), got {dry_mut!r}")
        self._cls = cls
        self._args, self._kwargs = capture_call(args, kwargs, f"ObjectDef({cls.__qualname__})")
        self._mut = cls.dry_mut if dry_mut is None else dry_mut

    # -- accessors ----------------------------------------------------------------------------
    @property
    def cls(self) -> type[Object]:
        """The Object subclass this definition builds."""
        return self._cls

    @property
    def args(self) -> tuple[Any, ...]:
        """Positional constructor arguments."""
        return self._args

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword constructor arguments (including ``dry_id`` when the definition has one)."""
        return self._kwargs

    @property
    def dry_id(self) -> str | None:
        """The id objects built from this definition get, or None for a fresh id each build."""
        value = self._kwargs.get("dry_id")
        return value if isinstance(value, str) else None

    @property
    def dry_mut(self) -> bool:
        """Whether objects of this definition change after construction."""
        return self._mut

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_object(cls, obj: Object) -> ObjectDef:
        """The definition of an existing object (a deep copy; nested Objects become defs)."""
        return _Copier(obj).copy(obj)

    def copy(self) -> ObjectDef:
        """An independent deep copy."""
        return _Copier(self).copy(self)

    def without_id(self) -> ObjectDef:
        """This definition with no top-level ``dry_id`` (builds fresh objects)."""
        new = self.copy()
        new._kwargs.pop("dry_id", None)
        return new

    def fresh_ids(self) -> ObjectDef:
        """A copy whose every ``dry_id``, nested ones included, is new (one nested id used in
        several places gets one new id, so what the definition shares stays shared), with no
        top-level id. Build it to get a copy of an object that can be saved beside the
        original: ``obj.definition().fresh_ids().build()`` (call it once per copy).
        :meth:`without_id` drops only the top-level id, so such copies' nested objects keep
        the original's ids."""
        new = self.without_id()
        renamed: dict[str, str] = {}
        for nested in iter_defs(new):
            old = nested._kwargs.get("dry_id")
            if isinstance(old, str):
                nested._kwargs["dry_id"] = renamed.setdefault(old, str(uuid.uuid4()))
        return new

    def build(self) -> Object:
        """Build a new Object from this definition."""
        return _build(self, {})

    # -- plain JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain-JSON, human-readable form; :meth:`from_dict` reads it back."""
        from dryml._encoding import Encoder

        encoded = Encoder().encode(self)
        assert isinstance(encoded, dict)
        encoded.pop("__dry__")
        return encoded

    @classmethod
    def from_dict(cls, data: dict[str, Any], trust: Iterable[str] = ()) -> ObjectDef:
        """Read :meth:`to_dict` output; classes resolve under the same trust rules as files."""
        from dryml._encoding import Decoder
        from dryml._trust import TrustPolicy
        from dryml.errors import FormatError

        if not isinstance(data, dict):
            raise FormatError(f"ObjectDef.from_dict needs a dict, got {type(data).__name__}")
        result = Decoder(TrustPolicy(trust)).decode({**data, "__dry__": "def"})
        assert isinstance(result, ObjectDef)
        return result

    # -- comparison and display ---------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectDef):
            return NotImplemented
        return (
            self._cls is other._cls
            and self._mut == other._mut
            and values_equal(self._args, other._args)
            and values_equal(self._kwargs, other._kwargs)
        )

    def __repr__(self) -> str:
        # A definition used in several places of a hand-built one is written out once.
        return shared_repr(self, lambda: repr(
            {"cls": self._cls, "dry_mut": self._mut, "dry_args": self._args,
             "dry_kwargs": self._kwargs}
        ), lambda: f"<ObjectDef {self._cls.__qualname__}, as above>")


def iter_defs(value: Any, skip: Callable[[ObjectDef], bool] | None = None
              ) -> Iterator[ObjectDef]:
    """Every ObjectDef in ``value``, itself included, and nested in definitions' arguments,
    lists, tuples and dict values: each before what it holds, in argument order. A definition
    for which ``skip`` is true is left out, with everything it holds."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, ObjectDef):
            if skip is not None and skip(item):
                continue
            yield item
            stack.extend(reversed([*item._args, *item._kwargs.values()]))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))


class _Copier:
    """Deep-copies Objects and ObjectDefs into a new definition, at most
    :data:`MAX_DEFINITION_NODES` of them."""

    def __init__(self, root: Object | ObjectDef) -> None:
        self.root, self.made = root, 0

    def copy(self, value: Object | ObjectDef) -> ObjectDef:
        self.made += 1
        if self.made > MAX_DEFINITION_NODES:
            raise DefinitionTooLargeError(
                f"the definition of {_name(self.root)} would hold more than "
                f"{MAX_DEFINITION_NODES:,} nested definitions: it uses shared objects in many "
                "places, many levels deep, and a definition writes each use out in full. Save "
                "it with save_object (which stores each object once) instead of asking for its "
                "definition or adding it to a Repo")
        new = ObjectDef.__new__(ObjectDef)
        if isinstance(value, ObjectDef):
            new._cls, new._mut, args, kwargs = value._cls, value._mut, value._args, value._kwargs
        else:
            new._cls, new._mut = type(value), type(value).dry_mut
            args, kwargs = value._dry_args, value._dry_kwargs
        new._args = copy_value(args, self.copy)
        new._kwargs = copy_value(kwargs, self.copy)
        return new


def _name(value: Object | ObjectDef) -> str:
    if isinstance(value, ObjectDef):
        return f"an ObjectDef of {value.cls.__qualname__}"
    return f"{type(value).__qualname__} {value.dry_id!r}"


def _build(definition: ObjectDef, memo: dict[str, tuple[ObjectDef, Object]]) -> Object:
    dry_id = definition.dry_id
    if dry_id is not None and dry_id in memo:
        first, built = memo[dry_id]
        if first is not definition and first != definition:
            # otherwise the second definition's arguments would be ignored, silently
            raise ArgumentError(
                f"two definitions in this one have the dry_id {dry_id!r} but differ ({first!r} "
                f"and {definition!r}); the id names one object: give one of them another id, "
                "or none")
        return built

    def on_object(value: Any) -> Any:
        return _build(value, memo) if isinstance(value, ObjectDef) else value

    args = copy_value(definition.args, on_object)
    kwargs = copy_value(definition.kwargs, on_object)
    obj = definition.cls(*args, **kwargs)
    if dry_id is not None:
        memo[dry_id] = (definition, obj)
    return obj
