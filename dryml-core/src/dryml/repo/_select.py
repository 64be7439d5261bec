"""What ``Repo.get`` accepts as a target, turned into a Selector (or a list of ids)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dryml._object import Object
from dryml._objectdef import ObjectDef
from dryml.errors import ArgumentError
from dryml.repo._match import UNREADABLE, MatchContext, decoded_for_predicate
from dryml.repo._selector import Cond, Selector, _Combined

__all__ = ["Target", "as_selector", "target_ids"]

Target = (None | str | Object | ObjectDef | Selector | type | Callable[[ObjectDef], Any]
          | list[Any] | tuple[Any, ...])


class _IdSelector(Selector):
    """Objects by dry_id."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__()
        self.ids = ids

    def match_definition(self, data: dict[str, Any], ctx: MatchContext) -> bool:
        return data.get("dry_kwargs", {}).get("dry_id") in self.ids

    def conds(self) -> tuple[list[Cond], bool]:
        if not self.ids:
            return [Cond("0", "0", [], -1)], True
        sql = f"o.id IN ({', '.join('?' * len(self.ids))})"
        return [Cond(sql, sql, list(self.ids), -1)], True

    def __repr__(self) -> str:
        return repr(self.ids[0]) if len(self.ids) == 1 else repr(self.ids)


class _FnSelector(Selector):
    """A predicate on ObjectDefs (classes resolve under the repository's trust)."""

    def __init__(self, fn: Callable[[ObjectDef], Any], trust: tuple[str, ...]) -> None:
        super().__init__()
        self.fn, self.trust = fn, trust

    def match_definition(self, data: dict[str, Any], ctx: MatchContext) -> bool:
        definition = definition_for_predicate(data, self.trust)
        return definition is not None and bool(self.fn(definition))

    def conds(self) -> tuple[list[Cond], bool]:
        return [], False

    def __repr__(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


def definition_for_predicate(data: dict[str, Any], trust: tuple[str, ...]) -> ObjectDef | None:
    """The ObjectDef a predicate target is called with; None for a definition that cannot be
    built here (see :func:`dryml.repo._match.decoded_for_predicate`)."""
    found = decoded_for_predicate(lambda: ObjectDef.from_dict(data, trust=trust), "ObjectDefs")
    return None if found is UNREADABLE else found


def as_selector(target: Target, trust: tuple[str, ...]) -> Selector | None:
    """The Selector for a ``get`` target (None: everything)."""
    if target is None:
        return None
    if isinstance(target, Selector):
        return target
    if isinstance(target, str):
        return _IdSelector([target])
    if isinstance(target, Object):
        return _IdSelector([target.dry_id])
    if isinstance(target, ObjectDef):
        if target.dry_id is not None:
            return _IdSelector([target.dry_id])
        return Selector.from_def(target)
    if isinstance(target, type):
        # a class is callable: taken for a predicate, Model(definition) built an object per
        # row and selected them all, so repo.delete(C) deleted the whole repository. It means
        # what Selector(C) means: C and its subclasses.
        return Selector(target)
    if isinstance(target, (list, tuple)):
        if not target:
            return _IdSelector([])  # nothing
        parts = [as_selector(t, trust) for t in target]
        if any(p is None for p in parts):
            return None
        return _Combined("or", parts)  # type: ignore[arg-type]
    if callable(target):
        return _FnSelector(target, trust)
    raise ArgumentError(f"cannot select objects with {target!r}: use a dry_id, an Object, an "
                        "ObjectDef, a Selector, a class, a predicate, or a list of these")


def target_ids(target: Target) -> list[str] | None:
    """The dry_ids when ``target`` names objects by id only, else None."""
    if isinstance(target, str):
        return [target]
    if isinstance(target, Object):
        return [target.dry_id]
    if isinstance(target, ObjectDef) and target.dry_id is not None:
        return [target.dry_id]
    if isinstance(target, (list, tuple)) and target:
        ids = [target_ids(t) for t in target]
        if all(i is not None for i in ids):
            return [x for i in ids for x in i]  # type: ignore[union-attr]
    return None
