"""Definitions as plain JSON: from live objects, from a file's manifest, and their digests.

The repository keeps every object's definition in the form :meth:`ObjectDef.to_dict` writes
(``{"cls", "dry_mut", "dry_args", "dry_kwargs"}``, nested definitions tagged ``"def"``) so
that queries never open a ``.dry`` file and never import a class.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from dryml._encoding import TAG
from dryml._objectdef import ObjectDef
from dryml._trust import class_path
from dryml.errors import FormatError

if TYPE_CHECKING:
    from dryml.format._container import ContainerReader

__all__ = [
    "MAX_METADATA_DEPTH",
    "MAX_METADATA_ENTRIES",
    "MAX_METADATA_PATH_CHARS",
    "canonical_numpy",
    "category_digest",
    "class_mros",
    "flatten_metadata",
    "manifest_definition",
    "metadata_problem",
    "scalar_entries",
]


def class_mros(definition: ObjectDef) -> dict[str, list[str]]:
    """Every class a definition names (its own, nested ones, class values) with its MRO."""
    found: dict[str, list[str]] = {}

    def add(cls: type) -> None:
        path = class_path(cls)
        if path not in found:
            found[path] = [class_path(k) for k in cls.__mro__ if k is not object]

    def walk(value: Any) -> None:
        if isinstance(value, ObjectDef):
            add(value.cls)
            for item in value.args:
                walk(item)
            for item in value.kwargs.values():
                walk(item)
        elif isinstance(value, type):
            add(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)

    walk(definition)
    return found


def _strip_ids(node: Any) -> Any:
    """A copy of a definition JSON with every definition's ``dry_id`` removed, in the form
    that ``ObjectDef ==`` cannot tell apart: ``-0.0`` as ``0.0`` (numpy's too, whose NaNs are
    one NaN), and the items of a dict with non-string keys in a fixed order."""
    if isinstance(node, list):
        return [_strip_ids(v) for v in node]
    if type(node) is float and node == 0:
        return 0.0
    if not isinstance(node, dict):
        return node
    if node.get(TAG) == "codec" and node.get("codec") in _NUMPY_CODECS:
        return canonical_numpy(node)
    if node.get(TAG) == "dict" and isinstance(node.get("items"), list):
        items = [_strip_ids(item) for item in node["items"]]
        items.sort(key=lambda item: json.dumps(item, sort_keys=True))
        return {**node, "items": items}
    out = {k: _strip_ids(v) for k, v in node.items()}
    if (node.get(TAG) == "def" or (TAG not in node and "cls" in node)) and isinstance(
            out.get("dry_kwargs"), dict):
        out["dry_kwargs"] = {k: v for k, v in out["dry_kwargs"].items() if k != "dry_id"}
    return out


def category_digest(definition: dict[str, Any]) -> str:
    """A digest shared by every object built from one definition, whatever their dry_ids."""
    canon = json.dumps(_strip_ids(definition), sort_keys=True, separators=(",", ":"),
                       ensure_ascii=True)
    return hashlib.sha256(canon.encode()).hexdigest()[:32]


_NUMPY_CODECS = ("numpy.scalar", "numpy.ndarray")
_NUMPY_FLOATS = re.compile(r"[<>|=]?[fc]\d{1,2}")


def canonical_numpy(node: dict[str, Any]) -> dict[str, Any]:
    """A numpy scalar's or inline array's entry of a definition (``{"__dry__": "codec",
    "codec": "numpy.scalar", "data": {...}}``) with its floats as ``ObjectDef ==`` compares
    them: ``-0.0`` as ``0.0`` and every NaN as one NaN (a complex number with a NaN part as
    one), so that a query for ``np.float64(0.0)`` finds an object built with
    ``np.float64(-0.0)``, as it does for Python floats. Anything else (other dtypes, an entry
    this cannot read) is returned as it is. Never raises: the entry may come from any file."""
    from dryml._numpy_codec import _dtype

    data = node.get("data")
    descr = data.get("dtype") if type(data) is dict else None
    records = type(descr) is list  # a record dtype: its float fields
    if not records and (type(descr) is not str or not _NUMPY_FLOATS.fullmatch(descr)):
        return node
    try:
        dtype = _dtype(descr)
        raw = base64.b64decode(str(data.get("b64")), validate=True)  # type: ignore[union-attr]
        if dtype.itemsize == 0 or len(raw) % dtype.itemsize:
            return node
        values = np.frombuffer(raw, dtype=dtype).copy()
    except (TypeError, ValueError, FormatError):
        return node
    with np.errstate(all="ignore"):
        if records:
            # records compare field by field (-0.0 == 0.0) or by their bytes (a NaN only
            # equals its own bits): only their zeros are made one
            _positive_zeros(values)
        else:
            values += 0  # -0.0 + 0.0 is 0.0 (each part of a complex number)
            values[np.isnan(values)] = np.nan
    b64 = base64.b64encode(values.tobytes()).decode("ascii")
    return node if b64 == data["b64"] else {  # type: ignore[index]
        **node, "data": {**data, "b64": b64}}  # type: ignore[dict-item]


def _positive_zeros(records: np.ndarray) -> None:
    """Make every -0.0 of a record array's float fields (nested ones too) 0.0, in place."""
    for name in records.dtype.names or ():
        field = records[name]
        if field.dtype.names:
            _positive_zeros(field)
        elif field.dtype.kind in "fc":
            field += 0


def _kind(value: Any, tagged: bool = True) -> tuple[str, Any] | None:
    """The index's (type code, value) for a JSON scalar, or None for anything else.
    ``tagged``: a definition's ``{"__dry__": "float", ...}`` is the number it stands for;
    metadata is plain JSON, where such a dict is only a dict (``tagged=False``)."""
    if value is None:
        return "n", None
    if value is True or value is False:
        return "b", int(value)
    if type(value) is int:
        # beyond 64 bits: the nearest double, typed 'I' so that equality stays exact (in
        # Python), while ranges and sorting see its place among the numbers
        return ("i", value) if -(2**63) <= value < 2**63 else ("I", float(value))
    if type(value) is float:
        return ("f", value) if value == value else None  # SQLite holds +-inf, not NaN
    if type(value) is str:
        return "s", value
    if tagged and type(value) is dict and value.get(TAG) == "float" and len(value) == 2:
        infinity = _INFINITIES.get(str(value.get("value")))  # how definitions write +-inf
        return None if infinity is None else ("f", infinity)
    if tagged:
        # a numpy number: typed 'N' (ranges see it among the numbers; equality, which tells
        # np.float32 from np.float64 and both from float, is decided in Python)
        number = numpy_number(value)
        if number is not None:
            return "N", float(number) if abs(number) >= 2**63 else number
    return None


_INFINITIES = {"inf": math.inf, "-inf": -math.inf}
_NUMPY_NUMBER = re.compile(r"[<>|=]?[iuf]\d{1,2}")


def numpy_number(value: Any) -> int | float | None:
    """The number a definition's numpy integer or float scalar (``np.float64(0.01)``, as the
    numpy scalar codec writes it) stands for, so that ranges find it as they find ``0.01``;
    None for anything else (booleans, complex, dates, NaN, a malformed entry). Never raises:
    the entry may come from any file."""
    if type(value) is not dict or value.get(TAG) != "codec" or value.get(
            "codec") != "numpy.scalar":
        return None
    data = value.get("data")
    if type(data) is not dict:
        return None
    descr = data.get("dtype")
    if type(descr) is not str or not _NUMPY_NUMBER.fullmatch(descr):
        return None
    try:
        dtype = np.dtype(descr)
        raw = base64.b64decode(str(data.get("b64")), validate=True)
        if dtype.kind not in "iuf" or len(raw) != dtype.itemsize:
            return None
        number = np.frombuffer(raw, dtype=dtype)[0]
    except (TypeError, ValueError):
        return None
    if dtype.kind == "f":
        result = float(number)
        return result if result == result else None
    return int(number)


def scalar_entries(definition: dict[str, Any], metadata: dict[str, Any]
                   ) -> Iterator[tuple[str, str, Any]]:
    """(key, type code, value) rows for the index: args ``a.N``, kwargs ``k.NAME``, metadata
    ``m.dotted.path``. Non-scalar values get type code ``x`` so that presence is known."""
    for i, value in enumerate(definition.get("dry_args", [])):
        kind = _kind(value)
        yield (f"a.{i}", *kind) if kind else (f"a.{i}", "x", None)
    for name, value in definition.get("dry_kwargs", {}).items():
        kind = _kind(value)
        yield (f"k.{name}", *kind) if kind else (f"k.{name}", "x", None)
    for key, value in flatten_metadata(metadata):
        kind = _kind(value, tagged=False)  # plain JSON (otherwise a metadata dict
        # {"__dry__": "float", "value": "inf"} would be indexed, ranged and sorted as infinity)
        yield (f"m.{key}", *kind) if kind else (f"m.{key}", "x", None)


#: The most nested levels, key/value entries and characters of dotted key paths that an
#: object's metadata may give the index (each entry's path repeats its parents' keys, so a
#: 3 KB file of deep dicts with long keys made gigabytes of paths). Far above what a run's
#: metrics and settings need (a classification report of 25,000 classes is 125,001 entries
#: and 4 million characters).
MAX_METADATA_DEPTH = 64
MAX_METADATA_ENTRIES = 2_000_000
MAX_METADATA_PATH_CHARS = 64_000_000


def metadata_problem(metadata: dict[str, Any]) -> str | None:
    """Why ``metadata`` would give the index too much (see :data:`MAX_METADATA_DEPTH`), or
    None; measured without building the paths."""
    entries = chars = 0
    stack: list[tuple[dict[str, Any], int, int]] = [(metadata, 0, 0)]
    while stack:
        node, depth, prefix = stack.pop()
        if depth >= MAX_METADATA_DEPTH:
            return f"metadata nests more than {MAX_METADATA_DEPTH} levels"
        for key, value in node.items():
            length = prefix + len(str(key))
            entries += 1
            chars += length
            if entries > MAX_METADATA_ENTRIES or chars > MAX_METADATA_PATH_CHARS:
                return (f"metadata gives more than {MAX_METADATA_ENTRIES:,} entries or "
                        f"{MAX_METADATA_PATH_CHARS:,} characters of key paths to index")
            if isinstance(value, dict):
                stack.append((value, depth + 1, length + 1))
    return None


def flatten_metadata(metadata: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"metrics": {"acc": 1}}`` -> ``("metrics", {...}), ("metrics.acc", 1)``."""
    for key, value in metadata.items():
        path = f"{prefix}{key}"
        yield path, value
        if isinstance(value, dict):
            yield from flatten_metadata(value, path + ".")


class _Members:
    """Reads a file's binary members so their values can be kept inline in the index."""

    def __init__(self, reader: ContainerReader) -> None:
        self.reader = reader

    def get_array(self, name: str) -> Any:
        return self.reader.read_array(name)

    def get_bytes(self, name: str) -> bytes:
        return self.reader.read_bytes(name)

    def member_size(self, name: str) -> int:
        return self.reader.info(name).raw_size

    def framework_version(self, framework: str) -> str | None:
        return None


def manifest_definition(raw: dict[str, Any], reader: ContainerReader | None) -> dict[str, Any]:
    """The root object's definition JSON rebuilt from a raw manifest (imports no class).

    Object references become nested definitions; binary members are read back inline when a
    reader is given, as :meth:`ObjectDef.to_dict` would have written them.
    """
    nodes = {n.get("id"): n for n in raw.get("objects", []) if isinstance(n, dict)}
    members = _Members(reader) if reader is not None else None
    # A child shared by several holders is built once (its members read once); the weight
    # of each definition is how large it is written out in full (shared children repeated),
    # which a chain of shared children makes exponential in the chain's depth.
    built: dict[Any, tuple[dict[str, Any], int]] = {}

    def node_def(dry_id: Any, depth: int) -> tuple[dict[str, Any], int]:
        if isinstance(dry_id, str) and dry_id in built:
            return built[dry_id]
        node = nodes.get(dry_id)
        if node is None or depth > 200:
            raise FormatError(f"the manifest refers to object {dry_id!r}, which it lacks")
        weight = [_NODE_WEIGHT]
        kwargs = {k: value(v, depth, weight) for k, v in dict(node.get("kwargs", {})).items()}
        kwargs["dry_id"] = dry_id
        mut = node.get("dry_mut", False)
        if type(mut) is not bool:  # bool("false") is True
            raise FormatError(f"object {dry_id!r}: dry_mut must be true or false, got "
                              f"{mut!r:.40}")
        definition = {"cls": node.get("cls"), "dry_mut": mut,
                      "dry_args": [value(v, depth, weight) for v in list(node.get("args", []))],
                      "dry_kwargs": kwargs}
        built[dry_id] = (definition, weight[0])
        return built[dry_id]

    def value(data: Any, depth: int, weight: list[int]) -> Any:
        if isinstance(data, list):
            return [value(v, depth, weight) for v in data]
        if not isinstance(data, dict):
            return data
        kind = data.get(TAG)
        if kind == "object":
            child, size = node_def(data.get("id"), depth + 1)
            _add_weight(weight, size)
            return {TAG: "def", **child}
        if kind == "bytes" and "member" in data and members is not None:
            raw_bytes = members.get_bytes(str(data["member"]))
            _add_weight(weight, len(raw_bytes))
            return {TAG: "bytes", "b64": base64.b64encode(raw_bytes).decode("ascii")}
        if kind == "codec" and isinstance(data.get("data"), dict) and "member" in data["data"]:
            inlined = _inline_codec(data, members)
            _add_weight(weight, len(str(inlined.get("data"))))
            return inlined
        return {k: value(v, depth, weight) for k, v in data.items()}

    return node_def(raw.get("root"), 0)[0]


#: The most a definition rebuilt from a file may weigh written out in full (roughly bytes):
#: a definition is a tree, so each holder of a shared child repeats it. A few KB of crafted
#: manifest (a chain of objects each holding the next twice) would otherwise expand to
#: gigabytes in the index.
MAX_DEFINITION_WEIGHT = 64 * 2**20
_NODE_WEIGHT = 1024  # an object written out (with its index entries): at most 65,536 of them


def _add_weight(weight: list[int], amount: int) -> None:
    weight[0] += amount
    if weight[0] > MAX_DEFINITION_WEIGHT:
        raise FormatError(
            f"the root object's definition would be over {MAX_DEFINITION_WEIGHT // 2**20} MB "
            "written out (objects shared by many holders, each repeated, or large byte "
            "values as constructor arguments); it is not indexed")


def _inline_codec(data: dict[str, Any], members: _Members | None) -> dict[str, Any]:
    from dryml import _registry

    if members is None:
        return data
    try:
        codec = _registry.arg_codec_by_name(str(data["codec"]), str(data["package"]))
        decoded = codec.impl.decode(data["data"], members)
        return {**data, "data": codec.impl.encode(decoded, None)}
    except Exception:  # noqa: BLE001 - a missing plugin: keep the reference, match what we can
        return data
