"""Nested structures of a Dataset element: tuples and dicts nest, everything else is a leaf.

Written here rather than taken from ``optree``/``tf.nest``: core must not depend on a framework,
the rules are small (tuples, namedtuples, dicts; lists are leaves), and the hot paths need
structure-specialised builders (``compile_builder``) that a generic library does not give.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from dryml.errors import DatasetError

__all__ = [
    "LEAF",
    "TreeDef",
    "compile_builder",
    "flatten",
    "leaves",
    "map_structure",
    "structure_of",
]


@attrs.frozen
class TreeDef:
    """The shape of a nested element: ``kind`` is ``"leaf"``, ``"tuple"`` or ``"dict"``.

    A dict's leaves are in sorted key order (``keys``, as ``tf.nest`` flattens), and it is
    rebuilt in the order its keys were given (``order``; empty when that is the sorted one):
    rebuilt sorted, ``np.concatenate(list(e.values()))`` put a NumpyDataset's feature columns
    in another order than the user's, and than a TFDataset's. Two elements whose keys differ
    only in order have the same structure."""

    kind: str
    node_type: type | None = None
    keys: tuple[Any, ...] = ()
    children: tuple[TreeDef, ...] = ()
    num_leaves: int = 1
    order: tuple[Any, ...] = attrs.field(default=(), eq=False)

    def describe(self) -> str:
        """A short human-readable form, used in error messages."""
        if self.kind == "leaf":
            return "x"
        if self.kind == "dict":
            pairs = zip(self.keys, self.children, strict=True)
            inner = ", ".join(f"{k!r}: {c.describe()}" for k, c in pairs)
            return "{" + inner + "}"
        return "(" + ", ".join(c.describe() for c in self.children) + ")"


LEAF = TreeDef("leaf")


def _sorted_keys(d: dict[Any, Any]) -> tuple[Any, ...]:
    try:
        return tuple(sorted(d))
    except TypeError:  # keys of mixed types: keep insertion order
        return tuple(d)


def structure_of(value: Any) -> TreeDef:
    """The :class:`TreeDef` of ``value``."""
    if type(value) is tuple or isinstance(value, tuple):
        children = tuple(structure_of(v) for v in value)
        return TreeDef("tuple", type(value), (), children, sum(c.num_leaves for c in children))
    if isinstance(value, dict):
        keys = _sorted_keys(value)
        children = tuple(structure_of(value[k]) for k in keys)
        given = tuple(value)
        return TreeDef("dict", type(value), keys, children, sum(c.num_leaves for c in children),
                       () if given == keys else given)
    return LEAF


def leaves(value: Any, out: list[Any] | None = None) -> list[Any]:
    """The leaves of ``value`` in structure order."""
    if out is None:
        out = []
    if isinstance(value, tuple):
        for v in value:
            leaves(v, out)
    elif isinstance(value, dict):
        for k in _sorted_keys(value):
            leaves(value[k], out)
    else:
        out.append(value)
    return out


def flatten(value: Any) -> tuple[list[Any], TreeDef]:
    """``(leaves, treedef)`` of ``value``."""
    return leaves(value), structure_of(value)


def _expr(td: TreeDef, leaf_expr: Callable[[int], str], ns: dict[str, Any], pos: list[int]) -> str:
    if td.kind == "leaf":
        i = pos[0]
        pos[0] += 1
        return leaf_expr(i)
    parts = [_expr(c, leaf_expr, ns, pos) for c in td.children]
    if td.kind == "dict":
        key_names = {}
        for k in td.keys:
            name = f"K{len(ns)}"
            ns[name] = k
            key_names[k] = name
        part_of = dict(zip(td.keys, parts, strict=True))
        pairs = (f"{key_names[k]}: {part_of[k]}" for k in td.order or td.keys)
        body = "{" + ", ".join(pairs) + "}"
        if td.node_type is dict:
            return body
        name = f"T{len(ns)}"
        ns[name] = td.node_type
        return f"{name}({body})"
    body = "(" + "".join(p + ", " for p in parts) + ")"
    if td.node_type is tuple:
        return body
    name = f"T{len(ns)}"
    ns[name] = td.node_type
    return f"{name}(*{body})" if hasattr(td.node_type, "_fields") else f"{name}({body})"


def _is_flat_tuple(td: TreeDef) -> bool:
    flat = all(c.kind == "leaf" for c in td.children)
    return td.kind == "tuple" and td.node_type is tuple and flat


def compile_builder(td: TreeDef) -> Callable[[Sequence[Any]], Any] | None:
    """A fast function from a flat sequence of leaves to the nested element, or None when a
    tuple of the leaves already *is* the element (a flat tuple such as ``(x, y)``)."""
    if _is_flat_tuple(td):
        return None
    if td.kind == "leaf":
        return lambda flat: flat[0]
    ns: dict[str, Any] = {}
    code = "lambda a: " + _expr(td, lambda i: f"a[{i}]", ns, [0])
    builder: Callable[[Sequence[Any]], Any] = eval(code, ns)  # noqa: S307 - from td only
    return builder


def map_structure(fn: Callable[[Any], Any], value: Any) -> Any:
    """``value`` with ``fn`` applied to every leaf."""
    if isinstance(value, tuple):
        items = [map_structure(fn, v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):  # fn meets the leaves in flatten's order; the keys keep theirs
        mapped = {k: map_structure(fn, value[k]) for k in _sorted_keys(value)}
        return type(value)((k, mapped[k]) for k in value)
    return fn(value)


def check_same(td: TreeDef, other: TreeDef, where: str) -> None:
    """Raise :class:`DatasetError` when two elements have different structures."""
    if td != other:
        raise DatasetError(
            f"ragged structure: {where} has the structure {other.describe()} but the first "
            f"element has {td.describe()}; every element must have the same nesting of "
            "tuples/dicts."
        )
