"""Lists of same-type objects (a forest's trees, boosting stages) as one skops node.

skops describes every attribute of every object as a node of its own and every array as its
own ``.npy`` entry, which makes a 200-tree forest ~12,000 nodes and ~1,000 arrays whose
bookkeeping costs more than the data. Here such a list is written column-wise:

* attributes whose value is the same plain scalar in every item (most hyper-parameters) are
  written once; plain scalars that vary are one JSON list;
* arrays of one dtype and trailing shape (tree nodes, values, ``classes_``...) are concatenated
  into one ``.npy`` member of the ``.dry`` file and split (as views) on load;
* same-type objects below (each tree's ``tree_``) are batched the same way, recursively, and
  one object that every item refers to (boosting's ``RandomState``) is written once;
* anything else stays an ordinary skops node per item.

Each item's ``id`` is recorded as skops records an object's (``__id__``), so an item that the
file also holds elsewhere (a voting ensemble's ``named_estimators_`` beside its
``estimators_``) loads as one object, as it does through skops' own nodes.

Loading mirrors skops: estimators are rebuilt like its ``ObjectNode`` (``cls.__new__`` then
``__setstate__``) and decision-tree storage like its ``TreeNode`` (``Tree(*args)`` then
``__setstate__``), only after skops' audit has checked each item class and every child node
against the trusted types. Like :mod:`dryml_sklearn._skops_arrays`, this is used only while a
dryml save is running.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np

from dryml_sklearn._skops_import import import_skops

import_skops()  # before any skops.io module: see dryml_sklearn._skops_import

from skops.io._audit import NODE_TYPE_MAPPING, Node, get_tree  # noqa: E402 - after import_skops()
from skops.io._general import list_get_state, object_get_state  # noqa: E402 - after import_skops()
from skops.io._protocol import PROTOCOL  # noqa: E402 - after import_skops()
from skops.io._sklearn import tree_get_state  # noqa: E402 - after import_skops()
from skops.io._utils import (  # noqa: E402 - after import_skops()
    LoadContext,
    SaveContext,
    TrustedTypes,
    _get_state,
    get_module,
    get_state,
    gettype,
)

from dryml.errors import FormatError  # noqa: E402 - after import_skops()
from dryml_sklearn._checks import TREE  # noqa: E402 - after import_skops()

__all__ = ["LOADER", "MIN_ITEMS", "DrymlBatchNode", "batch_state", "install"]

LOADER = "DrymlBatchNode"
#: Shorter lists are left to skops (the saving would not pay for the extra node kind).
MIN_ITEMS = 8
_PLAIN = (bool, int, float, str, type(None))


def _split(item: Any, cls: type) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(kind, constructor args by position, state) of one item, or None if not batchable."""
    getter = _get_state.dispatch(cls)
    if getter is object_get_state and hasattr(cls, "__getstate__"):
        state = item.__getstate__()
        return ("object", {}, state) if isinstance(state, dict) else None
    if getter is tree_get_state:  # skops' own reduce-based node for decision-tree storage
        ctor, args, state = item.__reduce__()
        if ctor is cls and isinstance(state, dict):
            return "reduce", {str(i): a for i, a in enumerate(args)}, state
    return None


def _array_column(values: list[Any], writer: Any) -> dict[str, Any] | None:
    from dryml_sklearn._skops_arrays import zero_padding

    first = values[0]
    if not all(type(v) is np.ndarray and v.ndim >= 1 and v.dtype == first.dtype
               and v.shape[1:] == first.shape[1:] for v in values) or first.dtype.hasobject:
        return None
    lengths = [len(v) for v in values]
    if not any(lengths) and first.dtype.names is None:
        # all empty (e.g. categorical bitsets of numeric-only boosting): no member, whose
        # bytes would be all header
        return {"empty": first.dtype.str, "tail": list(first.shape[1:]), "lengths": lengths}
    # dtype= keeps a structured dtype's layout (tree nodes), which plain concatenate drops
    whole = zero_padding(np.concatenate(values, dtype=first.dtype))
    return {"member": writer.add_array(whole),
            "lengths": lengths}


def _columns(dicts: list[dict[str, Any]], save_context: SaveContext, writer: Any
             ) -> dict[str, Any] | None:
    keys = list(dicts[0])
    if any(list(d) != keys or not all(type(k) is str for k in d) for d in dicts):
        return None
    out: dict[str, Any] = {"keys": keys, "constant": {}, "plain": {}, "scalars": {},
                           "arrays": {}, "batches": {}, "shared": {}, "nodes": {}}
    for key in keys:
        values = [d[key] for d in dicts]
        first = values[0]
        if all(type(v) in _PLAIN for v in values):
            if all(type(v) is type(first) and v == first for v in values):
                out["constant"][key] = first
            else:
                out["plain"][key] = values
        elif all(v is first for v in values):  # one object (e.g. boosting's RandomState)
            out["shared"][key] = get_state(first, save_context)
        elif isinstance(first, np.generic) and not first.dtype.hasobject and all(
                type(v) is type(first) and v.dtype == first.dtype for v in values):
            # one dtype, not only one type: np.str_ 'saga' in a '<U3' column came back 'sag'
            out["scalars"][key] = writer.add_array(np.array(values, dtype=first.dtype))
        elif (column := _array_column(values, writer)) is not None:
            out["arrays"][key] = column
        elif (batch := batch_state(values, save_context, min_items=1)) is not None:
            out["batches"][key] = batch
        else:
            out["nodes"][key] = [get_state(v, save_context) for v in values]
    return out


def batch_state(items: list[Any], save_context: SaveContext, shape: tuple[int, ...] | None
                = None, min_items: int = MIN_ITEMS, nested: bool = False
                ) -> dict[str, Any] | None:
    """The batch node state for ``items``, or None to leave them to skops."""
    from dryml_sklearn._skops_arrays import current_writer

    writer = current_writer()
    if writer is None or len(items) < min_items:
        return None
    ids = [id(item) for item in items]
    if len(set(ids)) != len(ids):  # one object listed twice: skops' nodes keep it one object
        return None
    cls = type(items[0])
    if any(type(item) is not cls for item in items):
        return None
    parts = [_split(item, cls) for item in items]
    if any(p is None for p in parts) or len({p[0] for p in parts if p}) != 1:
        return None
    kind = parts[0][0] if parts[0] else ""
    args = _columns([p[1] for p in parts if p], save_context, writer) if kind == "reduce" \
        else None
    state = _columns([p[2] for p in parts if p], save_context, writer)
    if state is None or (kind == "reduce" and args is None):
        return None
    for item in items:
        save_context.memoize(item)  # keep ids unique while this dump runs
    return {"__class__": cls.__name__, "__module__": get_module(cls), "__loader__": LOADER,
            "kind": kind, "count": len(items), "shape": None if shape is None else list(shape),
            "nested": nested, "args": args, "state": state, "ids": ids}


def list_state(obj: list[Any], save_context: SaveContext) -> dict[str, Any]:
    """skops' list getter, except that a batch of same-type objects (or a list of equally long
    lists of them, like HistGradientBoosting's predictors) becomes one node."""
    if type(obj) is list and obj:
        if all(type(row) is list for row in obj):
            width = len(obj[0])
            if width and all(len(row) == width for row in obj):
                flat = [item for row in obj for item in row]
                state = batch_state(flat, save_context, shape=(len(obj), width), nested=True)
                if state is not None:
                    return state
        else:
            state = batch_state(obj, save_context)
            if state is not None:
                return state
    return list_get_state(obj, save_context)


def _empty(column: dict[str, Any], lengths: list[int], key: str) -> np.ndarray:
    """The empty array every item of an all-empty column holds."""
    tail = column.get("tail")
    if any(lengths) or not (isinstance(tail, list) and all(
            type(n) is int and n >= 0 for n in tail)) or not isinstance(column["empty"], str):
        raise FormatError(f"a batch's empty array column {key!r} is malformed")
    try:
        dtype = np.dtype(column["empty"])
    except TypeError:
        raise FormatError(f"a batch's array column {key!r} has a bad dtype") from None
    if dtype.hasobject:
        raise FormatError(f"a batch's array column {key!r} holds Python objects; refused")
    return np.empty((0, *tail), dtype=dtype)


class _Columns:
    """The load side of :func:`_columns`: values of item ``i`` on demand."""

    def __init__(self, data: Any, count: int, load_context: LoadContext,
                 trusted: TrustedTypes | None) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise FormatError("a batch of scikit-learn objects is malformed")
        self.keys: list[str] = data["keys"]
        parts = [data.get(k, {}) for k in ("constant", "plain", "scalars", "arrays", "batches",
                                           "shared", "nodes")]
        if not all(isinstance(p, dict) for p in parts):
            raise FormatError("a batch of scikit-learn objects is malformed")
        self.constant, self.plain, scalars, arrays, batches, shared, nodes = parts
        if not all(isinstance(m, str) for m in scalars.values()):
            raise FormatError("a batch's scalar column is malformed")
        self.scalars: dict[str, str] = scalars
        if set(self.keys) != set().union(*parts) or sum(len(p) for p in parts) != len(self.keys):
            raise FormatError("a batch of scikit-learn objects has inconsistent columns")
        values = [*self.constant.values(), *(v for c in self.plain.values() for v in c)]
        if any(type(v) not in _PLAIN for v in values) or any(
                not isinstance(c, list) or len(c) != count for c in self.plain.values()):
            raise FormatError("a batch of scikit-learn objects holds non-plain values")
        self.arrays: dict[str, tuple[str, list[int]]] = {}
        self.empty: dict[str, np.ndarray] = {}
        for key, column in arrays.items():
            lengths = column.get("lengths") if isinstance(column, dict) else None
            if not (isinstance(lengths, list) and len(lengths) == count
                    and all(type(n) is int and n >= 0 for n in lengths)):
                raise FormatError(f"a batch's array column {key!r} is malformed")
            if "empty" in column:
                self.empty[key] = _empty(column, lengths, key)
            elif isinstance(column.get("member"), str):
                self.arrays[key] = (column["member"], lengths)
            else:
                raise FormatError(f"a batch's array column {key!r} names no member")
        self.batches = {k: get_tree(v, load_context, trusted=trusted) for k, v in batches.items()}
        self.shared = {k: get_tree(v, load_context, trusted=trusted) for k, v in shared.items()}
        self.nodes = {key: [get_tree(v, load_context, trusted=trusted) for v in column]
                      for key, column in nodes.items() if isinstance(column, list)}
        if any(len(column) != count for column in self.nodes.values()) or len(
                self.nodes) != len(nodes):
            raise FormatError("a batch of scikit-learn objects has inconsistent columns")
        self.count = count

    def children(self) -> list[Node]:
        return [*self.batches.values(), *self.shared.values(),
                *(n for c in self.nodes.values() for n in c)]

    def build(self, reader: Any) -> list[dict[str, Any]]:
        split: dict[str, Any] = {key: [empty.copy() for _ in range(self.count)]
                                 for key, empty in self.empty.items()}
        for key, member in self.scalars.items():
            whole = reader.get_array(member)
            if whole.shape != (self.count,):
                raise FormatError(f"a batch's scalar column {key!r} has the wrong length")
            split[key] = list(whole)
        for key, (member, lengths) in self.arrays.items():
            whole = reader.get_array(member)
            if whole.ndim < 1 or whole.shape[0] != sum(lengths):
                raise FormatError(f"a batch's array column {key!r} does not match its lengths")
            split[key] = np.split(whole, np.cumsum(lengths)[:-1])
        batches = {key: list(node.construct()) for key, node in self.batches.items()}
        shared = {key: node.construct() for key, node in self.shared.items()}
        if any(len(v) != self.count for v in batches.values()):
            raise FormatError("a nested batch has the wrong number of items")
        out = []
        for i in range(self.count):
            attrs = {}
            for key in self.keys:
                if key in self.constant:
                    attrs[key] = self.constant[key]
                elif key in self.plain:
                    attrs[key] = self.plain[key][i]
                elif key in split:
                    attrs[key] = split[key][i]
                elif key in batches:
                    attrs[key] = batches[key][i]
                elif key in shared:
                    attrs[key] = shared[key]
                else:
                    attrs[key] = self.nodes[key][i].construct()
            out.append(attrs)
        return out


_BUDGETS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _budget(load_context: LoadContext) -> int:
    """The most objects a batch of this zip may hold: as many as the zip has bytes (each
    object's column values take at least one byte of its schema), at least 4096."""
    src = load_context.src
    if src is None:  # no zip (a node built on its own)
        return 4096
    if src not in _BUDGETS:
        _BUDGETS[src] = max(4096, sum(info.file_size for info in src.infolist()))
    return _BUDGETS[src]


class DrymlBatchNode(Node):
    """Rebuilds a list (or object array) of same-type objects written by :func:`batch_state`."""

    def __init__(self, state: dict[str, Any], load_context: LoadContext,
                 trusted: TrustedTypes | None = None) -> None:
        super().__init__(state, load_context, trusted)
        self.trusted = self._get_trusted(trusted, [])  # dryml_sklearn._trust audits
        count, shape, kind = state.get("count"), state.get("shape"), state.get("kind")
        nested = state.get("nested", False)
        if type(count) is not int or count < 1 or kind not in ("object", "reduce") or (
                type(nested) is not bool or (nested and (shape is None or len(shape) != 2))):
            raise FormatError("a batch of scikit-learn objects is malformed")
        # each dimension at least 1, so no dimension exceeds the count; math.prod is exact (a
        # shape of [2**32, 2**32] overflowed numpy's product to 0)
        if shape is not None and not (isinstance(shape, list) and all(
                type(n) is int and n >= 1 for n in shape) and math.prod(shape) == count):
            raise FormatError("a batch of scikit-learn objects has a bad shape")
        budget = _budget(load_context)
        if count > budget:
            # a 23 KB file asked for 30 million trees (and a
            # nested shape of 2**40 empty rows), each built before anything could fail
            raise FormatError(f"a batch of {count} scikit-learn objects in {budget} bytes of "
                              "scikit-learn data: the file was altered")
        if kind == "reduce" and f"{self.module_name}.{self.class_name}" != TREE:
            # only the class skops itself rebuilds by calling it (its TreeNode)
            raise FormatError(f"a batch may only rebuild {TREE} by calling its class")
        self.count, self.shape, self.kind, self.nested = count, shape, kind, nested
        self.args = _Columns(state.get("args"), count, load_context, trusted) \
            if kind == "reduce" else None
        self.state = _Columns(state.get("state"), count, load_context, trusted)
        self.known = self._register(state.get("ids"), load_context)
        args_children = self.args.children() if self.args is not None else []
        self.children = {"items": [*args_children, *self.state.children(),
                                   *self.known.values()]}
        self._items: list[Any] | None = None
        self._building = False

    def _register(self, ids: Any, load_context: LoadContext) -> dict[int, Node]:
        """Put each item in skops' memo under its saved id, so that the file's other
        references to it load as the same object; returns the nodes (by item index) that
        the memo already held for an item written before this batch."""
        if ids is None:  # written before items' ids were recorded: items are copies
            return {}
        if not (isinstance(ids, list) and len(ids) == self.count and all(
                type(i) is int for i in ids) and len(set(ids)) == self.count):
            raise FormatError("a batch of scikit-learn objects has malformed ids")
        known: dict[int, Node] = {}
        for index, item_id in enumerate(ids):
            node = load_context.get_object(item_id)
            if node is not None:
                known[index] = node
            else:
                load_context.memoize(_ItemNode(self, index, load_context), item_id)
        return known

    def items(self) -> list[Any]:
        """The items, in order (built once)."""
        if self._items is None:
            if self._building:  # an item or a reference in it leads back to this batch
                raise FormatError("a batch of scikit-learn objects contains itself: the file "
                                  "was altered")
            self._building = True
            try:
                self._items = self._build()
            finally:
                self._building = False
        return self._items

    def _build(self) -> list[Any]:
        from dryml_sklearn._skops_arrays import current_reader

        reader = current_reader()
        cls = gettype(self.module_name, self.class_name)
        states = self.state.build(reader)
        if self.args is not None:
            args = self.args.build(reader)
            items = [cls(*(a[str(j)] for j in range(len(a)))) for a in args]
            for item, attrs in zip(items, states, strict=True):
                item.__setstate__(attrs)
        else:
            items = []
            for attrs in states:
                item = cls.__new__(cls)
                if hasattr(item, "__setstate__"):
                    item.__setstate__(attrs)
                else:
                    item.__dict__.update(attrs)
                items.append(item)
        for index, node in self.known.items():
            items[index] = node.construct()
            if type(items[index]) is not cls:
                raise FormatError(f"a batch of {self.class_name} objects refers to a "
                                  f"{type(items[index]).__name__}: the file was altered")
        return items

    def _construct(self) -> Any:
        items = self.items()
        if self.shape is None:
            return items
        if self.nested:
            width = self.shape[1]
            return [items[i * width:(i + 1) * width] for i in range(self.shape[0])]
        out = np.empty(self.count, dtype=object)
        out[:] = items
        return out.reshape(self.shape)


class _ItemNode(Node):
    """One item of a :class:`DrymlBatchNode`, where the file refers to it again."""

    def __init__(self, batch: DrymlBatchNode, index: int, load_context: LoadContext) -> None:
        state = {"__class__": batch.class_name, "__module__": batch.module_name}
        super().__init__(state, load_context, memoize=False)
        self.trusted = batch.trusted
        self.batch, self.index = batch, index

    def _construct(self) -> Any:
        return self.batch.items()[self.index]


def install() -> None:
    """Register the list getter and the node loader with skops (see the module docstring)."""
    _get_state.register(list)(list_state)
    NODE_TYPE_MAPPING[(LOADER, PROTOCOL)] = DrymlBatchNode
