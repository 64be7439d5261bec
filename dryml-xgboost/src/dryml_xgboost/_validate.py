"""Check an XGBoost model document before XGBoost's own parser sees it.

XGBoost's loader trusts what it reads: a node index, a category segment or a tree id out of
range is read or written out of bounds (one changed byte can kill the process with SIGSEGV).
:func:`check_model` decodes the UBJSON member with :mod:`dryml_xgboost._ubjson` and checks the
document against XGBoost's model schema (``doc/model.schema`` and the loaders of XGBoost 2.x
and 3.x): types, array lengths, counts that agree with each other, indices in range, trees
that are trees. :func:`check_config` checks the training configuration JSON against the
model. Anything else is a :class:`~dryml.errors.FormatError`; nothing here imports XGBoost.

Trees are checked by columns (vectorised over all nodes of all trees), and a member checked
once in a process is remembered by its bytes (:class:`_Checked`), so loading it again costs
a hash and a comparison rather than the checks.
"""

from __future__ import annotations

import collections
import json
import re
import threading
from typing import Any

import numpy as np
import xxhash

from dryml.errors import FormatError
from dryml_xgboost._ubjson import Records, decode

__all__ = ["MAX_CATEGORY", "MAX_FEATURES", "check_config", "check_model",
           "check_model_and_config"]

#: Features a model may declare: XGBoost sizes per-thread buffers by it when predicting.
MAX_FEATURES = 1 << 24
#: Category codes a categorical split may name (XGBoost's own bound: codes are float32s).
MAX_CATEGORY = 1 << 24
_MAX_CLASSES = 1 << 16
_ROOT_PARENT = (-1, 2**31 - 1)
_DELETED_SPLIT = 2**31 - 1
_INT = re.compile(r"^-?[0-9]{1,19}$")
_FEATURE_TYPES = frozenset({"q", "c", "int", "i", "float"})
_BOOSTERS = ("gbtree", "dart", "gblinear")
_BY_COLUMNS = frozenset({"trees"})
_INT_ARRAYS = frozenset({"tree_info", "iteration_indptr"})


def _fail(where: str, what: str) -> FormatError:
    return FormatError(f"the XGBoost model in the file is invalid: {where}: {what}; "
                       "the file is damaged or was not written by dryml")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "expected an object")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, "expected a string")
    return value


def _int_str(value: Any, where: str, lo: int, hi: int) -> int:
    """An integer parameter written as a decimal string (XGBoost stores parameters so)."""
    text = _str(value, where)
    if not _INT.match(text) or not lo <= int(text) <= hi:
        raise _fail(where, f"{text[:40]!r} is not an integer in [{lo}, {hi}]")
    return int(text)


def _ints(value: Any, where: str, n: int | None = None, *, native: bool = True
          ) -> np.ndarray:
    """An integer array (typed, or a list of integers) of length ``n`` if given: int64, or
    with ``native=False`` a typed array as it is (callers that concatenate convert once)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iu":
            raise _fail(where, f"expected integers, got {value.dtype}")
        out = value.astype(np.int64) if native else value
    elif isinstance(value, list) and all(type(v) is int for v in value):
        out = np.array(value, dtype=np.int64) if value else np.zeros(0, np.int64)
    else:
        raise _fail(where, "expected an array of integers")
    if n is not None and out.size != n:
        raise _fail(where, f"{out.size} entries, expected {n}")
    return out


def _floats(value: Any, where: str, n: int | None = None) -> None:
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f":
            raise _fail(where, f"expected numbers, got {value.dtype}")
        size = value.size
    elif isinstance(value, list) and all(type(v) in (int, float) for v in value):
        size = len(value)
    else:
        raise _fail(where, "expected an array of numbers")
    if n is not None and size != n:
        raise _fail(where, f"{size} entries, expected {n}")


def _in(values: np.ndarray, lo: int, hi: int, where: str) -> None:
    """Every value in ``[lo, hi)``."""
    if values.size and (int(values.min()) < lo or int(values.max()) >= hi):
        raise _fail(where, f"values must lie in [{lo}, {hi})")


def _base_score(text: str, outputs: int) -> None:
    body = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        values = [float(v) for v in body.split(",")]
    except ValueError:
        raise _fail("learner_model_param.base_score", f"{text[:40]!r} is not a number list"
                    ) from None
    if len(values) != 1 and len(values) != outputs:
        raise _fail("learner_model_param.base_score", f"{len(values)} values for {outputs} "
                    "outputs")


class _Model:
    """The learner-level facts later checks need."""

    def __init__(self, learner: dict[str, Any]) -> None:
        param = _obj(learner.get("learner_model_param"), "learner_model_param")
        self.param = param
        where = "learner_model_param"
        self.num_feature = _int_str(param.get("num_feature"), f"{where}.num_feature", 0,
                                    MAX_FEATURES)
        self.num_class = _int_str(param.get("num_class", "0"), f"{where}.num_class", 0,
                                  _MAX_CLASSES)
        self.num_target = _int_str(param.get("num_target", "1"), f"{where}.num_target", 1,
                                   _MAX_CLASSES)
        if self.num_class > 0 and self.num_target > 1:
            raise _fail(where, "num_class and num_target cannot both be set")
        self.outputs = self.num_class if self.num_class > 0 else self.num_target
        if "boost_from_average" in param:
            _int_str(param["boost_from_average"], f"{where}.boost_from_average", 0, 1)
        if "base_score" in param:
            _base_score(_str(param["base_score"], f"{where}.base_score"), self.outputs)
        self.iterations = 0


def _check_learner_meta(learner: dict[str, Any], model: _Model) -> None:
    for key in ("feature_names", "feature_types"):
        values = learner.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _fail(key, "expected an array of strings")
        if values and len(values) != model.num_feature:
            raise _fail(key, f"{len(values)} entries for {model.num_feature} features")
        if key == "feature_types" and not set(values) <= _FEATURE_TYPES:
            raise _fail(key, f"types must be among {sorted(_FEATURE_TYPES)}")
    attributes = _obj(learner.get("attributes", {}), "attributes")
    if not all(isinstance(v, str) for v in attributes.values()):
        raise _fail("attributes", "values must be strings")
    objective = _obj(learner.get("objective"), "objective")
    name = _str(objective.get("name"), "objective.name")
    if name.startswith("multi:"):
        classes = _obj(objective.get("softmax_multiclass_param"),
                       "objective.softmax_multiclass_param")
        if _int_str(classes.get("num_class"), "objective num_class", 0,
                    _MAX_CLASSES) != model.num_class or model.num_class < 1:
            raise _fail("objective", "num_class disagrees with the model's")


def _check_attributes_after(learner: dict[str, Any], model: _Model) -> None:
    best = learner.get("attributes", {}).get("best_iteration")
    if best is not None:
        _int_str(best, "attributes.best_iteration", 0, max(model.iterations - 1, 0))


_NODE_ARRAYS = ("left_children", "right_children", "parents", "split_indices", "default_left")


def _tree_arrays(tree: Any, where: str) -> tuple[int, int, list[np.ndarray]]:
    """A tree's node count, declared deleted nodes and node arrays (lengths checked)."""
    tree = _obj(tree, where)
    param = _obj(tree.get("tree_param"), f"{where}.tree_param")
    n = _int_str(param.get("num_nodes"), f"{where}.num_nodes", 1, 2**31 - 1)
    _int_str(param.get("num_feature"), f"{where}.num_feature", 0, MAX_FEATURES)
    declared = _int_str(param.get("num_deleted", "0"), f"{where}.num_deleted", 0, n)
    leaf_size = _int_str(param.get("size_leaf_vector", "1"), f"{where}.size_leaf_vector",
                         0, 2**31 - 1)
    if leaf_size > 1:
        raise _fail(where, "multi-target trees (multi_strategy='multi_output_tree') are not "
                    "supported by dryml")
    for key in ("loss_changes", "sum_hessian", "base_weights", "split_conditions"):
        _floats(tree.get(key), f"{where}.{key}", n)
    return n, declared, [_ints(tree.get(k), f"{where}.{k}", n, native=False)
                         for k in _NODE_ARRAYS]


def _check_trees(trees: list[Any], model: _Model, budget: list[int]) -> None:
    """Every tree is a tree: all trees' nodes are checked at once (vectorised)."""
    sizes, declared = [], []
    columns: list[list[np.ndarray]] = [[] for _ in _NODE_ARRAYS]
    for i, tree in enumerate(trees):
        if not isinstance(tree, dict) or type(tree.get("id")) is not int or tree["id"] != i:
            raise _fail(f"trees[{i}]", "tree ids must be 0, 1, 2... in order")
        n, deleted_declared, arrays = _tree_arrays(tree, f"trees[{i}]")
        sizes.append(n)
        declared.append(deleted_declared)
        for column, array in zip(columns, arrays, strict=True):
            column.append(array)
    if not trees:
        return
    nodes = [np.concatenate(c).astype(np.int64) for c in columns]
    n_nodes = np.array(sizes, dtype=np.int64)
    leaf, offsets = _check_nodes(n_nodes, np.array(declared, dtype=np.int64), nodes, model)
    for i, tree in enumerate(trees):
        if "split_type" in tree:
            start = int(offsets[i])
            _check_categorical(tree, f"trees[{i}]", sizes[i], leaf[start:start + sizes[i]],
                               budget)


def _param_column(trees: Records, key: str, default: int, lo: int, hi: int) -> np.ndarray:
    """A ``tree_param`` integer of every tree (read by columns), each within ``[lo, hi]``."""
    values = trees.decimals.get(("tree_param", key))
    if values is None:
        return np.full(len(trees), default, dtype=np.int64)
    bad = np.flatnonzero((values < lo) | (values > hi))
    if bad.size:
        raise _fail(f"trees[{bad[0]}].{key}", f"{values[bad[0]]} is not an integer in "
                    f"[{lo}, {hi}]")
    return values


def _check_tree_records(trees: Records, model: _Model, budget: list[int]) -> None:
    """:func:`_check_trees` for trees read by columns: tree 0 is checked as a document
    (types, keys), and since every tree has its layout, the others by columns."""
    first = trees.first
    _tree_arrays(first, "trees[0]")
    n = len(trees)
    ids = trees.ints.get(("id",))
    if ids is None or not np.array_equal(ids, np.arange(n)):
        bad = 0 if ids is None else int(np.flatnonzero(ids != np.arange(n))[0])
        raise _fail(f"trees[{bad}]", "tree ids must be 0, 1, 2... in order")
    n_nodes = _param_column(trees, "num_nodes", 0, 1, 2**31 - 1)
    _param_column(trees, "num_feature", 0, 0, MAX_FEATURES)
    declared = _param_column(trees, "num_deleted", 0, 0, 2**31 - 1)
    if (declared > n_nodes).any():
        bad = int(np.flatnonzero(declared > n_nodes)[0])
        raise _fail(f"trees[{bad}].num_deleted", "more deleted nodes than nodes")
    leaf_size = _param_column(trees, "size_leaf_vector", 1, 0, 2**31 - 1)
    if (leaf_size > 1).any():
        raise _fail(f"trees[{int(np.flatnonzero(leaf_size > 1)[0])}]", "multi-target trees "
                    "(multi_strategy='multi_output_tree') are not supported by dryml")
    for key in ("loss_changes", "sum_hessian", "base_weights", "split_conditions",
                *_NODE_ARRAYS):
        counts = trees.typed[(key,)][2]
        if not np.array_equal(counts, n_nodes):
            bad = int(np.flatnonzero(counts != n_nodes)[0])
            raise _fail(f"trees[{bad}].{key}", f"{counts[bad]} entries, expected "
                        f"{n_nodes[bad]}")
    nodes = [trees.column((key,)) for key in _NODE_ARRAYS]
    leaf, offsets = _check_nodes(n_nodes, declared, nodes, model)
    if "split_type" not in first:
        return
    for i in _categorical_records(trees, n_nodes):
        start, size = int(offsets[i]), int(n_nodes[i])
        _check_categorical(trees.element(i), f"trees[{i}]", size, leaf[start:start + size],
                           budget)


def _categorical_records(trees: Records, n_nodes: np.ndarray) -> list[int]:
    """The trees whose categorical fields need a look (all, unless every tree is laid out
    as XGBoost writes trees without categorical splits)."""
    every = list(range(len(trees)))
    split = trees.typed.get(("split_type",))
    if split is None or split[0].kind not in "iu" or not all(
            (k,) in trees.typed for k in _CATEGORY_ARRAYS):
        return every
    plain = split[2] == n_nodes
    for key in _CATEGORY_ARRAYS:
        plain &= trees.typed[(key,)][2] == 0
    values = trees.column(("split_type",))
    if values.any():  # some categorical split: which trees
        owner = np.repeat(np.arange(len(trees)), split[2])
        plain[owner[values != 0]] = False
    return np.flatnonzero(~plain).tolist()


def _check_nodes(n_nodes: np.ndarray, declared: np.ndarray, nodes: list[np.ndarray],
                 model: _Model) -> tuple[np.ndarray, np.ndarray]:
    """The node arrays of all trees end to end (int64): returns the leaf mask and where
    each tree begins.

    Each check is one or two passes over the nodes (issue 16: a 500-tree model has ~45,000
    nodes and every pass costs tens of microseconds): ranges ``[lo, hi)`` are tested as one
    unsigned comparison, and "no node is the child of two nodes" follows from "every child's
    parent is the node that names it" plus "no node names one child twice"."""
    left, right, parents, split, default_left = nodes
    offsets = np.zeros(n_nodes.size, dtype=np.int64)
    np.cumsum(n_nodes[:-1], out=offsets[1:])
    size_of, base = np.repeat(n_nodes, n_nodes), np.repeat(offsets, n_nodes)
    u64 = np.uint64

    def tree(node: Any) -> str:
        return f"trees[{int(np.searchsorted(offsets, node, 'right')) - 1}]"

    def bad(nodes: np.ndarray, what: str) -> None:
        """Fail naming the tree of the first node flagged (non-zero) in ``nodes``."""
        if nodes.any():
            raise _fail(tree(np.flatnonzero(nodes)[0]), what)

    bad(default_left & -2, "default_left must be 0 or 1")
    bad(split >> 31, "split_indices out of range")
    leaf = left == -1
    bad(leaf != (right == -1), "a node has exactly one child")
    internal = np.flatnonzero(~leaf)
    lo, hi, at, top = left[internal], right[internal], base[internal], size_of[internal] - 1
    # 1 <= child < size, as one unsigned comparison (a negative child wraps around)
    out_of_range = ((lo - 1).view(u64) >= top.view(u64)) | ((hi - 1).view(u64) >= top.view(u64))
    if out_of_range.any():
        raise _fail(tree(internal[out_of_range][0]), "a child index is out of range")
    wide = split[internal] >= model.num_feature
    if wide.any():
        raise _fail(tree(internal[wide][0]),
                    f"a split uses a feature outside the model's {model.num_feature}")
    lo += at
    hi += at
    # A child named twice (by two nodes, or twice by one) cannot have its parent's index in
    # parents for both: the two checks below are "every node is the child of one node".
    if (lo == hi).any():
        raise _fail("trees", "a node is the child of two nodes")
    own = internal - at
    if not (np.array_equal(parents[lo], own) and np.array_equal(parents[hi], own)):
        raise _fail("trees", "parents disagree with children")
    deleted = leaf & (split == _DELETED_SPLIT) & (default_left == 1)
    deleted[offsets] = False
    if deleted[lo].any() or deleted[hi].any():
        raise _fail("trees", "a deleted node is still a child")
    if not np.isin(parents[offsets], _ROOT_PARENT).all():
        raise _fail("trees", "a root has a parent")
    outside = parents.view(u64) >= size_of.view(u64)  # parents < 0 or >= size
    outside[offsets] = False
    bad(outside, "a parent index is out of range")
    deleted_count = np.add.reduceat(deleted, offsets, dtype=np.int64)
    if not np.array_equal(deleted_count, declared):
        raise _fail("trees", "num_deleted disagrees with the nodes")
    # Every live node hangs under its root (no cycles, no orphans): walk down from the roots.
    seen = np.zeros(left.size, dtype=bool)
    frontier = offsets
    seen[frontier] = True
    branch = ~leaf
    while frontier.size:
        frontier = frontier[branch[frontier]]
        at = base[frontier]
        frontier = np.concatenate([left[frontier] + at, right[frontier] + at])
        seen[frontier] = True
    if not np.array_equal(np.add.reduceat(seen, offsets, dtype=np.int64),
                          n_nodes - deleted_count):
        raise _fail("trees", "nodes unreachable from the root")
    return leaf, offsets


_CATEGORY_ARRAYS = ("categories_nodes", "categories_segments", "categories_sizes", "categories")


def _check_categorical(tree: dict[str, Any], where: str, n: int, leaf: np.ndarray,
                       budget: list[int]) -> None:
    raw = tree["split_type"]
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "iu" and raw.size == n and all(
            isinstance(tree.get(k), np.ndarray) and tree[k].size == 0 for k in _CATEGORY_ARRAYS
            ) and not raw.any():
        return  # no categorical split (every tree XGBoost 3 writes carries these arrays)
    split_type = _ints(raw, f"{where}.split_type", n)
    nodes = _ints(tree.get("categories_nodes"), f"{where}.categories_nodes")
    _in(split_type, 0, 2, f"{where}.split_type")
    segments = _ints(tree.get("categories_segments"), f"{where}.categories_segments",
                     nodes.size)
    sizes = _ints(tree.get("categories_sizes"), f"{where}.categories_sizes", nodes.size)
    categories = _ints(tree.get("categories"), f"{where}.categories")
    if not np.array_equal(nodes, np.flatnonzero(split_type == 1)):
        raise _fail(where, "categories_nodes disagree with split_type")
    if leaf[nodes].any():
        raise _fail(where, "a leaf has a categorical split")
    _in(sizes, 1, categories.size + 1, f"{where}.categories_sizes")
    _in(segments, 0, categories.size, f"{where}.categories_segments")
    if nodes.size and int((segments + sizes).max()) > categories.size:
        raise _fail(where, "a category segment runs past the categories")
    _in(categories, 0, MAX_CATEGORY, f"{where}.categories")
    for begin, size in zip(segments.tolist(), sizes.tolist(), strict=True):
        # XGBoost stores each split as a bitset up to its largest category.
        budget[0] -= (int(categories[begin:begin + size].max()) // 32 + 1) * 4
    if budget[0] < 0:
        raise _fail(where, "categorical splits would need far more memory than the file holds")


def _check_cats(cats: Any, model: _Model) -> None:
    cats = _obj(cats, "cats")
    enc = cats.get("enc", [])
    if not isinstance(enc, list) or (enc and len(enc) != model.num_feature):
        raise _fail("cats.enc", f"expected an array of {model.num_feature} columns")
    segments = _ints(cats.get("feature_segments", []), "cats.feature_segments")
    if (enc or segments.size) and (segments.size != len(enc) + 1 or segments[0] != 0
                                   or (np.diff(segments) < 0).any()):
        raise _fail("cats.feature_segments", "not the offsets of the columns")
    sorted_idx = _ints(cats.get("sorted_idx", []), "cats.sorted_idx")
    total = int(segments[-1]) if segments.size else 0
    if "sorted_idx" in cats and sorted_idx.size != total:
        raise _fail("cats.sorted_idx", f"{sorted_idx.size} entries for {total} categories")
    for f, column in enumerate(enc):
        where = f"cats.enc[{f}]"
        column = _obj(column, where)
        k = int(segments[f + 1] - segments[f])
        if "offsets" in column:
            offsets = _ints(column["offsets"], f"{where}.offsets")
            values = _ints(column.get("values"), f"{where}.values")
            if offsets.size != (k + 1 if k else 0) or (k and (
                    offsets[0] != 0 or (np.diff(offsets) < 0).any()
                    or offsets[-1] != values.size)) or (not k and values.size):
                raise _fail(where, "string offsets disagree with the values")
        else:
            _int_str(str(column.get("type")), f"{where}.type", 9, 16)
            if not isinstance(column.get("type"), int):
                raise _fail(f"{where}.type", "expected an integer")
            _ints(column.get("values"), f"{where}.values", k)
        if sorted_idx.size and k:
            part = np.sort(sorted_idx[segments[f]:segments[f + 1]])
            if not np.array_equal(part, np.arange(k)):
                raise _fail("cats.sorted_idx", f"column {f} is not a permutation")


def _check_gbtree(booster: dict[str, Any], model: _Model, size: int) -> int:
    body = _obj(booster.get("model"), "gradient_booster.model")
    param = _obj(body.get("gbtree_model_param"), "gbtree_model_param")
    num_trees = _int_str(param.get("num_trees"), "gbtree_model_param.num_trees", 0, size)
    _int_str(param.get("num_parallel_tree", "1"), "gbtree_model_param.num_parallel_tree", 1,
             max(num_trees, 1))
    trees = body.get("trees")
    if not isinstance(trees, list | Records) or len(trees) != num_trees:
        raise _fail("trees", f"expected {num_trees} trees")
    tree_info = _ints(body.get("tree_info"), "tree_info", num_trees)
    _in(tree_info, 0, model.outputs, "tree_info")
    if "iteration_indptr" in body:
        indptr = _ints(body["iteration_indptr"], "iteration_indptr")
        if indptr.size < 1 or indptr[0] != 0 or indptr[-1] != num_trees or (
                np.diff(indptr) < 0).any():
            raise _fail("iteration_indptr", "not the offsets of the boosting rounds")
        model.iterations = indptr.size - 1
    else:
        model.iterations = num_trees
    budget = [64 * 2**20 + 16 * size]
    if isinstance(trees, Records):
        _check_tree_records(trees, model, budget)
    else:
        _check_trees(trees, model, budget)
    if "cats" in body:
        _check_cats(body["cats"], model)
    return num_trees


def _check_booster(learner: dict[str, Any], model: _Model, size: int) -> None:
    booster = _obj(learner.get("gradient_booster"), "gradient_booster")
    name = booster.get("name")
    if name not in _BOOSTERS:
        raise _fail("gradient_booster.name", f"must be one of {_BOOSTERS}")
    if name == "gbtree":
        _check_gbtree(booster, model, size)
    elif name == "dart":
        inner = _obj(booster.get("gbtree"), "dart.gbtree")
        if inner.get("name") != "gbtree":
            raise _fail("dart.gbtree.name", "must be 'gbtree'")
        num_trees = _check_gbtree(inner, model, size)
        _floats(booster.get("weight_drop"), "dart.weight_drop", num_trees)
    else:
        body = _obj(booster.get("model"), "gblinear.model")
        _floats(body.get("weights"), "gblinear.weights",
                (model.num_feature + 1) * max(model.outputs, 1))
        rounds = body.get("boosted_rounds", 0)
        if type(rounds) is not int or not 0 <= rounds <= 2**31 - 1:
            raise _fail("gblinear.boosted_rounds", "expected a non-negative integer")
        if rounds and not model.num_feature:  # XGBoost trains none: its predict then raises
            raise _fail("learner_model_param.num_feature", "a trained linear model has features")
        model.iterations = rounds


class _Entry:
    """One remembered member: its bytes, its checked document and the configuration texts
    checked against it (the :data:`_Checked.CONFIGS` most recent)."""

    __slots__ = ("configs", "data", "doc")

    def __init__(self, data: bytes, doc: Any) -> None:
        self.data = data
        self.doc = doc
        self.configs: list[str] = []

    def size(self) -> int:
        return len(self.data) + sum(len(c) for c in self.configs)


class _Checked:
    """Model members checked in this process, kept (bytes and all) so that loading the same
    bytes again skips the checks: a hit needs the same length, the same xxh3-128 digest
    and then equal bytes (compared in full), so only what was checked is ever let through.
    Each entry also keeps the training configurations checked against that model (a config
    is text compared whole, so a hit is exactly what was checked, with exactly that model).
    Bounded: the most recent members and their configurations up to 64 MB in all, and
    :data:`CONFIGS` configurations per member."""

    LIMIT = 64 * 2**20
    CONFIGS = 8

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: collections.OrderedDict[tuple[int, bytes], _Entry] = (
            collections.OrderedDict())
        self.size = 0

    @staticmethod
    def key(data: bytes) -> tuple[int, bytes]:
        return len(data), xxhash.xxh3_128_digest(data)

    def get(self, key: tuple[int, bytes], data: bytes) -> _Entry | None:
        """The entry of exactly these bytes, or None."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None and entry.data == data:
                self.entries.move_to_end(key)
                return entry
        return None

    def put(self, key: tuple[int, bytes], data: bytes, doc: Any) -> _Entry | None:
        """Remember checked bytes; returns their entry (None when not kept: too large, or
        another member with the same digest is there)."""
        if len(data) > self.LIMIT // 4:
            return None
        with self.lock:
            if key in self.entries:
                return None
            entry = self.entries[key] = _Entry(data, doc)
            self._grow(len(data))
            return entry

    def has_config(self, entry: _Entry, config: str) -> bool:
        with self.lock:
            return config in entry.configs

    def put_config(self, entry: _Entry, config: str) -> None:
        if len(config) > self.LIMIT // 64:
            return
        with self.lock:
            if config in entry.configs:
                return
            entry.configs.append(config)
            grown = len(config)
            while len(entry.configs) > self.CONFIGS:
                grown -= len(entry.configs.pop(0))
            if any(e is entry for e in self.entries.values()):  # not dropped meanwhile
                self._grow(grown)

    def _grow(self, change: int) -> None:
        """Count ``change`` bytes in and drop the least recent entries past the limit (lock
        held): a member's bytes and its configurations' text both count."""
        self.size += change
        while self.size > self.LIMIT:
            self.size -= self.entries.popitem(last=False)[1].size()


_CHECKED = _Checked()


def check_model(data: bytes, *, by_columns: bool = True, cache: bool = True
                ) -> dict[str, Any]:
    """:func:`_check_model`, remembered: the same bytes checked before in this process
    return at once (see :class:`_Checked`; ``cache=False`` always checks)."""
    return _check_remembered(data, None, by_columns=by_columns, cache=cache)


def check_model_and_config(data: bytes, config: str | None) -> dict[str, Any]:
    """:func:`check_model`, then :func:`check_config` of ``config`` (when given) against it;
    both remembered, so loading the same model and configuration again skips every check
    (the configuration's JSON parse and walk cost a tenth of XGBoost's own load)."""
    return _check_remembered(data, config)


def _check_remembered(data: bytes, config: str | None, *, by_columns: bool = True,
                      cache: bool = True) -> dict[str, Any]:
    cache = cache and type(data) is bytes
    key = _CHECKED.key(data) if cache else None
    entry = None if key is None else _CHECKED.get(key, data)
    if entry is None:
        doc = _check_model(data, by_columns=by_columns)
        if key is not None:
            entry = _CHECKED.put(key, data, doc)
        if entry is None:  # not remembered (too large, or a digest taken): check it all
            if config is not None:
                check_config(config, doc)
            return doc
    if config is not None and not _CHECKED.has_config(entry, config):
        check_config(config, entry.doc)
        _CHECKED.put_config(entry, config)
    return entry.doc  # type: ignore[no-any-return]


def _check_model(data: bytes, *, by_columns: bool = True) -> dict[str, Any]:
    """Decode and check a UBJSON model; returns the document (FormatError if invalid).

    Trees are read and checked by columns (vectorised) where they all share one layout, as
    the trees XGBoost writes do; ``by_columns=False`` reads every value one by one (the
    same checks, slower: tests compare the two).
    """
    doc = _obj(decode(data, _BY_COLUMNS, _INT_ARRAYS) if by_columns else decode(data),
               "the document")
    version = doc.get("version")
    if isinstance(version, np.ndarray):
        version = version.tolist()
    if not (isinstance(version, list) and len(version) == 3
            and all(type(v) is int and v >= 0 for v in version)):
        raise _fail("version", "expected [major, minor, patch]")
    learner = _obj(doc.get("learner"), "learner")
    model = _Model(learner)
    _check_learner_meta(learner, model)
    _check_booster(learner, model, len(data))
    _check_attributes_after(learner, model)
    return doc


def _plain(node: Any, where: str = "config") -> None:
    """Only what XGBoost's JSON reader reads as written: printable ASCII strings, ..."""
    if isinstance(node, dict):
        for key, value in node.items():
            _plain(key, where)
            _plain(value, f"{where}.{key}")
    elif isinstance(node, list):
        for value in node:
            _plain(value, where)
    elif isinstance(node, str):
        if not node.isascii() or not node.isprintable() or "\\" in node:
            raise _fail(where, "strings must be printable ASCII")
    elif node is not None and type(node) not in (bool, int):
        raise _fail(where, f"unexpected {type(node).__name__}")


def check_config(config: str, doc: dict[str, Any]) -> str:
    """The training configuration JSON, checked against the model ``doc``; returns it."""
    if len(config) > 16 * 2**20:
        raise _fail("config", "too large")
    try:
        parsed = json.loads(config)
    except (ValueError, RecursionError):
        raise _fail("config", "not valid JSON") from None
    _plain(parsed)
    learner = _obj(_obj(parsed, "config").get("learner"), "config.learner")
    model = doc["learner"]
    for key in ("learner_model_param", "objective"):
        if key in learner and learner[key] != model[key]:
            raise _fail(f"config.{key}", "disagrees with the model")
    booster = learner.get("gradient_booster", {})
    name = model["gradient_booster"]["name"]
    if _obj(booster, "config.gradient_booster").get("name", name) != name:
        raise _fail("config.gradient_booster", "disagrees with the model")
    train = _obj(learner.get("learner_train_param", {}), "config.learner_train_param")
    if train.get("booster", name) != name or train.get("objective", model["objective"][
            "name"]) != model["objective"]["name"]:
        raise _fail("config.learner_train_param", "disagrees with the model")
    if train.get("multi_strategy", "one_output_per_tree") != "one_output_per_tree":
        raise _fail("config.learner_train_param.multi_strategy",
                    "only one_output_per_tree is supported by dryml")
    return config
