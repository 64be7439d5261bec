"""What ``dryml inspect`` knows about a ``.dry`` file, read from its manifest alone.

Nothing here decodes a value through the trust rules or imports a module the file names:
argument values are summarised from their JSON encoding (see :mod:`dryml._encoding`), and
trust is *explained* (:meth:`dryml._trust.TrustPolicy.explain`), never exercised.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

import attrs

from dryml._encoding import TAG
from dryml._trust import _INERT_BUILTINS, TrustPolicy
from dryml.format import Manifest, MemberInfo, NodeRecord

__all__ = ["ClassReport", "FileReport", "MemberReport", "NodeReport", "build_report"]

_MAX_ITEMS = 6
_MAX_STR = 40
_MAX_DEPTH = 4
_MAX_SUMMARY = 200


@attrs.frozen
class NodeReport:
    """One Object of the file, with its children (``children`` are dry_ids).

    ``args``, ``kwargs`` and ``state`` are short readable summaries; ``encoded`` holds them
    exactly as the manifest stores them (see :mod:`dryml._encoding`).
    """

    id: str
    cls: str
    dry_mut: bool
    trusted: bool
    trust_reason: str
    args: list[str]
    kwargs: dict[str, str]
    state: dict[str, str]
    children: list[str]
    encoded: dict[str, Any]


@attrs.frozen
class ClassReport:
    """A class the file names, how it is used, and whether loading would accept it."""

    path: str
    used_as: str
    trusted: bool
    reason: str


@attrs.frozen
class MemberReport:
    """One binary member: sizes, compression, checksum state and who refers to it.

    ``content`` describes an array member (``"float32 (5000,)"``); ``checksum_ok`` is None
    when checksums were not verified.
    """

    name: str
    kind: str
    content: str
    size: int
    raw_size: int
    compression: str
    checksum: str
    checksum_ok: bool | None
    used_by: list[str]


@attrs.frozen
class FileReport:
    """Everything ``dryml inspect`` shows; ``objects`` are in tree order, root first."""

    file: str
    file_size: int
    format_version: int
    dryml_version: str
    created: str
    root: str
    plugins: dict[str, str]
    frameworks: dict[str, str]
    objects: list[NodeReport]
    unreachable: list[str]
    classes: list[ClassReport]
    members: list[MemberReport]


class _Scan:
    """Walks one node's encoded values: summaries, child objects, classes and members."""

    def __init__(self, classes_of: dict[str, str], members: dict[str, str]) -> None:
        self.classes_of = classes_of
        self.member_names = members
        self.children: list[str] = []
        self.classes: list[tuple[str, str]] = []
        self.members: list[tuple[str, str]] = []

    def summary(self, value: Any, where: str, depth: int = 0) -> str:  # noqa: PLR0911
        """A short readable rendering of an encoded value, recording what it refers to."""
        if isinstance(value, str):
            if value in self.member_names:
                self.members.append((value, where))
            return repr(value if len(value) <= _MAX_STR else value[:_MAX_STR] + "...")
        if value is None or isinstance(value, (bool, int, float)):
            return repr(value)
        if depth > _MAX_DEPTH:
            self._collect(value, where)
            return "..."
        if isinstance(value, list):
            return "[" + self._items(value, where, depth) + "]"
        if not isinstance(value, dict):
            return f"<{type(value).__name__}>"
        kind = value.get(TAG)
        if kind is None:
            return "{" + self._pairs(list(value.items()), where, depth) + "}"
        return self._tagged(str(kind), value, where, depth)

    def _tagged(self, kind: str, value: dict[str, Any], where: str, depth: int) -> str:  # noqa: PLR0911
        if kind == "tuple":
            items = _as_list(value.get("items"))
            return "(" + self._items(items, where, depth) + ("," if len(items) == 1 else "") + ")"
        if kind == "dict":
            pairs = [p for p in _as_list(value.get("items")) if isinstance(p, list) and len(p) == 2]
            return "{" + self._pairs([(self.summary(k, where, depth + 1), v) for k, v in pairs],
                                     where, depth, keys_done=True) + "}"
        if kind == "float":
            return str(value.get("value"))
        if kind == "bytes":
            if "member" in value:
                self._collect(value["member"], where)
                return f"<bytes in {value['member']}>"
            return f"<{len(str(value.get('b64', ''))) * 3 // 4} bytes>"
        if kind == "class":
            self.classes.append((str(value.get("path")), "argument class"))
            return f"<class {value.get('path')}>"
        if kind == "def":
            self.classes.append((str(value.get("cls")), "ObjectDef"))
            self._collect(value.get("dry_args"), where)
            self._collect(value.get("dry_kwargs"), where)
            return f"<ObjectDef {value.get('cls')}>"
        if kind == "object":
            dry_id = str(value.get("id"))
            self.children.append(dry_id)
            cls = self.classes_of.get(dry_id, "?:missing object")
            return f"<{cls.rpartition(':')[2]} {dry_id[:8]}>"
        if kind == "codec":
            return self._codec(value, where)
        return f"<unknown value kind {kind!r}>"

    def _codec(self, value: dict[str, Any], where: str) -> str:
        data = value.get("data")
        self._collect(data, where)
        name = value.get("codec")
        if name == "numpy.ndarray" and isinstance(data, dict):
            member = data.get("member")
            if isinstance(member, str):
                description = self.member_names.get(member) or "?"
                return f"<ndarray {description} in {member}>"
            return f"<ndarray {_dtype_name(data.get('dtype'))} {_shape(data.get('shape'))}>"
        if name == "numpy.scalar":
            return _numpy_scalar(data)
        return f"<{name} {self.summary(data, where, _MAX_DEPTH - 1)} from {value.get('package')}>"

    def _items(self, items: list[Any], where: str, depth: int) -> str:
        parts = [self.summary(v, where, depth + 1) for v in items[:_MAX_ITEMS]]
        self._collect(items[_MAX_ITEMS:], where)
        if len(items) > _MAX_ITEMS:
            parts.append(f"... ({len(items)} items)")
        return ", ".join(parts)

    def _pairs(self, pairs: list[tuple[Any, Any]], where: str, depth: int,
               keys_done: bool = False) -> str:
        parts = [f"{k if keys_done else repr(k)}: {self.summary(v, where, depth + 1)}"
                 for k, v in pairs[:_MAX_ITEMS]]
        self._collect([v for _, v in pairs[_MAX_ITEMS:]], where)
        if len(pairs) > _MAX_ITEMS:
            parts.append(f"... ({len(pairs)} keys)")
        return ", ".join(parts)

    def _collect(self, value: Any, where: str) -> None:
        """Record what a value that is not shown refers to (children, classes, members)."""
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(reversed(item))
            elif isinstance(item, dict):
                if item.get(TAG) in ("object", "class", "def"):
                    self.summary(item, where)
                else:
                    stack.extend(reversed(list(item.values())))
            elif isinstance(item, str) and item in self.member_names:
                self.members.append((item, where))

    def state_entry(self, entry: Any, where: str) -> str:
        """Summary of one stored value (``store.put``)."""
        if isinstance(entry, dict) and "value" in entry:
            return self.summary(entry["value"], where)
        if isinstance(entry, dict) and "serializer" in entry:
            meta = self.summary(entry.get("meta"), where, _MAX_DEPTH - 1)
            return f"<{entry['serializer']} {meta} from {entry.get('package')}>"
        return "<malformed entry>"


def _dtype_name(descr: Any) -> str:
    import numpy as np

    try:
        return np.dtype(descr).name if isinstance(descr, str) else "?"
    except TypeError:
        return repr(descr)


def _shape(shape: Any) -> str:
    return str(tuple(shape)) if isinstance(shape, list) else "?"


def _numpy_scalar(data: Any) -> str:
    from dryml._numpy_codec import SCALAR
    from dryml.errors import DrymlError

    try:
        value = SCALAR.decode(data, None)  # safe: a dtype string and raw bytes, never pickle
    except (DrymlError, ValueError, TypeError):
        return "<malformed numpy scalar>"
    return f"np.{value.dtype.name}({value.item()!r})"


def _npy_description(stream: IO[bytes], info: MemberInfo) -> str:
    """``"float32 (5000,)"`` from a ``.npy`` member's header (read, never decoded further)."""
    import io

    import numpy as np

    stream.seek(info.offset)
    head = stream.read(min(info.size, 1 << 16))
    try:
        if info.compression == "zstd":
            import zstandard

            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(head)) as zs:
                head = zs.read(min(info.raw_size, 1 << 16))
        fp = io.BytesIO(head)
        major, _ = np.lib.format.read_magic(fp)
        read = {1: np.lib.format.read_array_header_1_0,
                2: np.lib.format.read_array_header_2_0}[major]
        shape, _, dtype = read(fp, max_header_size=1 << 16)
    except Exception:  # noqa: BLE001 - a damaged header is shown as unknown, not raised
        return "?"
    return f"{dtype.name} {tuple(shape)}"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_SUMMARY else text[:_MAX_SUMMARY - 4] + " ..."


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _class_trust(policy: TrustPolicy, path: str, used_as: str) -> tuple[bool, str]:
    module, _, name = path.partition(":")
    if used_as == "argument class" and module == "builtins" and name in _INERT_BUILTINS:
        return True, "an inert builtin type"
    trusted, reason = policy.explain(path)
    if not trusted and module == "__main__":
        reason = "from a script (__main__): loads only in a script that defines it"
    return trusted, reason


def _scan_node(node: NodeRecord, classes_of: dict[str, str], members: dict[str, str]
               ) -> tuple[_Scan, list[str], dict[str, str], dict[str, str]]:
    scan = _Scan(classes_of, members)
    short = f"{node.cls.rpartition(':')[2]} {node.id[:8]}"
    args = [_clip(scan.summary(v, f"{short}: args[{i}]")) for i, v in enumerate(node.args)]
    kwargs = {k: _clip(scan.summary(v, f"{short}: kwargs[{k!r}]"))
              for k, v in node.kwargs.items()}
    state = {k: _clip(scan.state_entry(v, f"{short}: state[{k!r}]"))
             for k, v in node.state.items()}
    return scan, args, kwargs, state


def _tree_order(root: str, children: dict[str, list[str]]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()
    stack = [root]
    while stack:
        dry_id = stack.pop()
        if dry_id in seen or dry_id not in children:
            continue
        seen.add(dry_id)
        order.append(dry_id)
        stack.extend(reversed(children[dry_id]))
    return order


def build_report(file: str, stream: IO[bytes], manifest: Manifest, file_size: int,
                 trust: Iterable[str] = (), verify: bool = True) -> FileReport:
    """The report of one opened file; ``verify`` checks every member's checksum."""
    policy = TrustPolicy(list(trust))
    classes_of = {node.id: node.cls for node in manifest.objects}
    nodes: dict[str, NodeReport] = {}
    classes: dict[tuple[str, str], ClassReport] = {}
    used_by: dict[str, list[str]] = {name: [] for name in manifest.members}
    described = {name: _npy_description(stream, info) if info.kind == "npy" else ""
                 for name, info in manifest.members.items()}
    for node in manifest.objects:
        scan, args, kwargs, state = _scan_node(node, classes_of, described)
        for path, used_as in [(node.cls, "Object"), *scan.classes]:
            if (path, used_as) not in classes:
                classes[path, used_as] = ClassReport(path, used_as,
                                                     *_class_trust(policy, path, used_as))
        for member, where in scan.members:
            used_by[member].append(where)
        trusted, reason = classes[node.cls, "Object"].trusted, classes[node.cls, "Object"].reason
        nodes.setdefault(node.id, NodeReport(
            node.id, node.cls, node.dry_mut, trusted, reason, args, kwargs, state,
            list(dict.fromkeys(scan.children)),
            {"args": node.args, "kwargs": node.kwargs, "state": node.state}))
    order = _tree_order(manifest.root, {k: v.children for k, v in nodes.items()})
    members = [MemberReport(name, info.kind, described[name], info.size, info.raw_size,
                            info.compression, info.checksum,
                            _verify(stream, info) if verify else None,
                            list(dict.fromkeys(used_by[name])))  # (a list scan was quadratic)
               for name, info in manifest.members.items()]
    return FileReport(
        file, file_size, manifest.format_version, manifest.dryml_version, manifest.created,
        manifest.root, dict(manifest.plugins), dict(manifest.frameworks),
        [nodes[i] for i in order], [i for i in nodes if i not in order],
        sorted(classes.values(), key=lambda c: (c.path, c.used_as)), members)


def _verify(stream: IO[bytes], info: MemberInfo) -> bool:
    """Whether a member's stored bytes match its checksum (streamed, nothing decoded)."""
    import xxhash

    algorithm, _, digest = info.checksum.partition(":")
    if algorithm != "xxh3_64":
        return False
    hasher = xxhash.xxh3_64()
    stream.seek(info.offset)
    remaining = info.size
    while remaining:
        chunk = stream.read(min(remaining, 1 << 22))
        if not chunk:
            return False
        hasher.update(chunk)
        remaining -= len(chunk)
    return hasher.hexdigest() == digest
