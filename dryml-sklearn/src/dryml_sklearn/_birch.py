"""``Birch`` through skops, which refuses it: its CF-tree is a graph of nodes linked both ways
(parent to child, leaf to neighbouring leaf) whose arrays are views of per-node buffers.

While a dryml save runs, a Birch is written as one node holding its plain attributes and the
CF-tree flattened into lists (each tree node's buffers and how long its views are, each
subcluster's arrays with its child as an index, the leaves' links as indices, and which arrays
were one object). :class:`DrymlBirchNode` rebuilds the same graph: only the two CF-tree classes
of ``sklearn.cluster._birch`` are ever constructed here, whatever the file says; everything the
file supplies (numbers, arrays, lists) goes through skops' nodes and dryml's audit. Outside a
dryml save skops' own behaviour (refusing Birch) is unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dryml_sklearn._skops_import import import_skops

import_skops()  # before any skops.io module: see dryml_sklearn._skops_import

from skops.io._audit import NODE_TYPE_MAPPING, Node, get_tree  # noqa: E402 - after import_skops()
from skops.io._general import unsupported_get_state  # noqa: E402 - after import_skops()
from skops.io._protocol import PROTOCOL  # noqa: E402 - after import_skops()
from skops.io._utils import LoadContext, SaveContext, TrustedTypes, _get_state, get_state  # noqa: E402 - after import_skops()

from dryml.errors import FormatError  # noqa: E402 - after import_skops()

__all__ = ["LOADER", "DrymlBirchNode", "birch_state", "install"]

LOADER = "DrymlBirchNode"
_LINKS = ("root_", "dummy_leaf_")
_NODE_SKIP = ("subclusters_", "prev_leaf_", "next_leaf_", "centroids_", "squared_norm_")


def _flatten(birch: Any) -> dict[str, Any]:
    """Birch's attributes with its CF-tree as lists of plain values and indices."""
    nodes: list[Any] = []
    index: dict[int, int] = {}
    pending = [getattr(birch, key, None) for key in _LINKS]
    while pending:
        node = pending.pop()
        if node is None or id(node) in index:
            continue
        index[id(node)] = len(nodes)
        nodes.append(node)
        pending.extend(sub.child_ for sub in node.subclusters_)
        pending.extend((node.prev_leaf_, node.next_leaf_))

    def ref(node: Any) -> int:
        return -1 if node is None else index[id(node)]

    flat = []
    for node in nodes:
        attrs = {k: v for k, v in vars(node).items() if k not in _NODE_SKIP}
        subs = []
        for sub in node.subclusters_:
            fields = {k: v for k, v in vars(sub).items() if k != "child_"}
            fields["same_sum"] = sub.centroid_ is sub.linear_sum_
            if fields["same_sum"]:
                del fields["centroid_"]
            subs.append({"fields": fields, "child": ref(sub.child_)})
        flat.append({"attrs": attrs, "subclusters": subs,
                     "views": len(node.centroids_) if hasattr(node, "centroids_") else -1,
                     "prev": ref(node.prev_leaf_), "next": ref(node.next_leaf_)})
    attrs = {k: v for k, v in vars(birch).items() if k not in _LINKS}
    return {"attrs": attrs, "nodes": flat, "links": {k: ref(getattr(birch, k, None))
                                                      for k in _LINKS if hasattr(birch, k)}}


def birch_state(obj: Any, save_context: SaveContext) -> dict[str, Any]:
    """skops' refusal, except during a dryml save (see the module docstring)."""
    from dryml_sklearn._skops_arrays import current_writer

    if current_writer() is None:
        return unsupported_get_state(obj, save_context)
    return {"__class__": type(obj).__name__, "__module__": type(obj).__module__,
            "__loader__": LOADER, "content": get_state(_flatten(obj), save_context)}


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise FormatError(f"a Birch model's CF-tree is malformed ({what}); the file is damaged "
                          "or was crafted, so the model was not returned")


def _rebuild(flat: Any) -> Any:
    from sklearn.cluster import Birch
    from sklearn.cluster._birch import _CFNode, _CFSubcluster

    _check(isinstance(flat, dict) and isinstance(flat.get("nodes"), list)
           and isinstance(flat.get("attrs"), dict) and isinstance(flat.get("links"), dict),
           "its parts")
    count = len(flat["nodes"])

    def node_at(i: Any) -> Any:
        _check(type(i) is int and -1 <= i < count, "a node index is out of range")
        return None if i == -1 else nodes[i]

    nodes = [_CFNode.__new__(_CFNode) for _ in range(count)]
    for node, part in zip(nodes, flat["nodes"], strict=True):
        _check(isinstance(part, dict) and isinstance(part.get("attrs"), dict)
               and isinstance(part.get("subclusters"), list), "a node")
        node.__dict__.update(part["attrs"])
        views = part.get("views")
        _check(type(views) is int, "a node's view length")
        if views >= 0:
            init_c, init_sq = node.__dict__.get("init_centroids_"), node.__dict__.get(
                "init_sq_norm_")
            _check(isinstance(init_c, np.ndarray) and isinstance(init_sq, np.ndarray)
                   and init_c.ndim == 2 and views <= min(len(init_c), len(init_sq)),
                   "a node's buffers")
            node.centroids_ = init_c[:views, :]
            node.squared_norm_ = init_sq[:views]
        else:
            node.squared_norm_ = []
        node.subclusters_ = []
        for sub_part in part["subclusters"]:
            _check(isinstance(sub_part, dict) and isinstance(sub_part.get("fields"), dict),
                   "a subcluster")
            sub = _CFSubcluster.__new__(_CFSubcluster)
            fields = dict(sub_part["fields"])
            same = fields.pop("same_sum", False)
            sub.__dict__.update(fields)
            if same is True:
                sub.centroid_ = sub.__dict__.get("linear_sum_")
            sub.child_ = node_at(sub_part.get("child"))
            node.subclusters_.append(sub)
        node.prev_leaf_ = node_at(part.get("prev"))
        node.next_leaf_ = node_at(part.get("next"))
    birch = Birch.__new__(Birch)
    birch.__dict__.update(flat["attrs"])
    for key, i in flat["links"].items():
        _check(key in _LINKS, "an unknown link")
        setattr(birch, key, node_at(i))
    return birch


class DrymlBirchNode(Node):
    """A Birch written by :func:`birch_state`."""

    def __init__(self, state: dict[str, Any], load_context: LoadContext,
                 trusted: TrustedTypes | None = None) -> None:
        super().__init__(state, load_context, trusted)
        if f"{self.module_name}.{self.class_name}" != "sklearn.cluster._birch.Birch":
            raise FormatError("a Birch node may only rebuild sklearn.cluster.Birch")
        self.trusted = self._get_trusted(trusted, [])
        self.content = get_tree(state["content"], load_context, trusted=trusted)
        self.children = {"content": self.content}

    def _construct(self) -> Any:
        return _rebuild(self.content.construct())


def install() -> None:
    """Register the Birch getter and the node loader with skops."""
    from sklearn.cluster import Birch

    _get_state.register(Birch)(birch_state)
    NODE_TYPE_MAPPING[(LOADER, PROTOCOL)] = DrymlBirchNode
