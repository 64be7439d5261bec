"""Test helpers: craft .dry files (valid ones rewritten into hostile ones) and test classes."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import xxhash
import zstandard

from dryml import Object
from dryml.format._container import _TRAILER, ContainerReader


class Leaf(Object):
    """An Object with one argument."""

    def __init__(self, value: Any = None) -> None:
        self.value = value


class Holder(Object):
    """An Object with nested Objects and stored arrays."""

    def __init__(self, *children: Any, scale: float = 1.0) -> None:
        self.children = children
        self.scale = scale
        self.weights = np.arange(5000, dtype=np.float32) * scale

    def save_object_imp(self, store: Any) -> None:
        store.put("weights", self.weights)
        store.put("info", {"epochs": 3, "pair": (1, 2)})

    def load_object_imp(self, store: Any) -> None:
        self.weights = store.get("weights")
        self.info = store.get("info")


def sample_bytes() -> bytes:
    """A valid file with shared children, arrays, bytes and numpy scalars."""
    from dryml import save_object

    shared = Leaf({"k": [1, 2.5, None, True], "b": b"x" * 5000})
    root = Holder(shared, [shared, Leaf(np.float32(2))], scale=2.0)
    buf = io.BytesIO()
    save_object(root, buf)
    return buf.getvalue()


def rewrite_manifest(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """Apply ``edit`` to the manifest and rebuild a file with a *valid* manifest checksum.

    The members are kept byte for byte, so what the reader sees is exactly the edited
    manifest: this reaches the checks behind the checksum.
    """
    reader = ContainerReader(io.BytesIO(data))
    manifest = reader.manifest
    edit(manifest)
    raw = json.dumps(manifest).encode()
    stored = zstandard.ZstdCompressor().compress(raw)
    offset = reader.manifest_end
    body = data[:offset]
    trailer = _TRAILER.pack(offset, len(stored), len(raw), xxhash.xxh3_64_intdigest(stored),
                            reader.version, 0, b"DRYMLEND")
    return body + stored + trailer


#: a member as crafted files hold it: (stored bytes, raw size, compression, kind)
Member = tuple[bytes, int, str, str]


def explode(data: bytes) -> tuple[dict[str, Any], dict[str, Member]]:
    """A file's manifest (without its member table) and its members' stored bytes."""
    reader = ContainerReader(io.BytesIO(data))
    manifest = dict(reader.manifest)
    table = manifest.pop("members")
    members = {name: (data[m["offset"]:m["offset"] + m["size"]], m["raw_size"],
                      m["compression"], m["kind"]) for name, m in table.items()}
    return manifest, members


def build_file(manifest: dict[str, Any], members: dict[str, Member], *,
               version: int = 1, manifest_raw: bytes | None = None) -> bytes:
    """Lay out a whole .dry file byte by byte with *valid* checksums everywhere, so that what
    a crafted file says reaches the checks behind the checksums. ``manifest_raw`` replaces
    the manifest's JSON text (for manifests that are not JSON objects, or are huge)."""
    out = bytearray(b"DRYML\x00\r\n" + version.to_bytes(4, "little") + bytes(52))
    table: dict[str, Any] = {}
    for name, (stored, raw_size, compression, kind) in members.items():
        out += bytes(-len(out) % 64)
        table[name] = {"offset": len(out), "size": len(stored), "raw_size": raw_size,
                       "compression": compression, "kind": kind,
                       "checksum": "xxh3_64:" + xxhash.xxh3_64_hexdigest(stored)}
        out += stored
    out += bytes(-len(out) % 64)
    raw = manifest_raw if manifest_raw is not None else json.dumps(
        {**manifest, "members": table}).encode()
    stored = zstandard.ZstdCompressor().compress(raw)
    offset = len(out)
    out += stored
    out += _TRAILER.pack(offset, len(stored), len(raw), xxhash.xxh3_64_intdigest(stored),
                         version, 0, b"DRYMLEND")
    return bytes(out)


def zstd(raw: bytes) -> bytes:
    """``raw`` compressed as a .dry member is."""
    return zstandard.ZstdCompressor(level=3).compress(raw)


def json_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indices) into a decoded JSON value, the value itself first."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += json_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += json_paths(value, (*prefix, i))
    return out
