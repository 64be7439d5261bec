"""The repository's files: naming, atomic writes, stamps, and index rows rebuilt from a file.

A file's *stamp* is what the index records to notice any later change to it: its size, its
modification time (nanoseconds) and its manifest digest. The digest is the xxh3 checksum of
the stored manifest that every ``.dry`` file keeps in its 48-byte trailer, so taking a stamp
reads 48 bytes; the manifest holds every argument and every member's checksum, so a file whose
digest is unchanged holds the same objects (or fails its member checksums when loaded).
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import hashlib
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import IO, Any

import attrs

from dryml._io import _write, fsync_directory, open_container, open_regular
from dryml._object import Object
from dryml.errors import DrymlError, DrymlWarning, FormatError
from dryml.format._container import _TRAILER, HEADER_SIZE, TRAILER_MAGIC
from dryml.format._stale import make_temp, temp_target
from dryml.repo._defjson import category_digest, manifest_definition, metadata_problem
from dryml.repo._index import INDEX_NAME, Row
from dryml.repo._selector import known_mro

__all__ = ["Stamp", "file_name", "is_repo_file", "read_stamp", "row_from_file",
           "spare_file_name", "temp_files", "write_file", "write_temp"]

_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,120}$")


def file_name(dry_id: str) -> str:
    """``<dry_id>.dry`` when the id is a safe file name, else a digest of it."""
    if _SAFE.match(dry_id):
        return f"{dry_id}.dry"
    return f"id-{hashlib.sha256(dry_id.encode()).hexdigest()[:40]}.dry"


def spare_file_name(dry_id: str, n: int) -> str:
    """The ``n``-th other name for ``dry_id``'s file, used when :func:`file_name` is taken
    (by another object's file, or a file the index does not hold)."""
    digest = hashlib.sha256(dry_id.encode()).hexdigest()
    return f"id-{digest}-{n}.dry"


def is_repo_file(name: str) -> bool:
    """Files the repository itself keeps (the index and SQLite's companions), not objects."""
    return name.startswith(INDEX_NAME)


def temp_files(directory: Path, name: str | None = None) -> list[Path]:
    """dryml's temporary files of unfinished writes (of file ``name``, or all)."""
    pattern = f".{glob.escape(name)}.*.tmp" if name else ".*.tmp"
    return sorted(p for p in directory.glob(pattern)
                  if (target := temp_target(p.name)) is not None and name in (None, target))


@attrs.frozen
class Stamp:
    """What a file was when it was indexed: size, mtime (ns) and manifest digest."""

    size: int
    mtime: int
    digest: str


def read_stamp(stream: IO[bytes]) -> Stamp:
    """The stamp of an open ``.dry`` file (reads its trailer; FormatError when it has none)."""
    if stream.writable():
        stream.flush()
    stat = os.fstat(stream.fileno())
    if stat.st_size < HEADER_SIZE + _TRAILER.size:
        raise FormatError(f"the file is truncated ({stat.st_size} bytes); not a whole .dry file")
    stream.seek(stat.st_size - _TRAILER.size)
    trailer = stream.read(_TRAILER.size)
    if len(trailer) != _TRAILER.size or trailer[-len(TRAILER_MAGIC):] != TRAILER_MAGIC:
        raise FormatError("the file is truncated or damaged: no end-of-file marker")
    digest = _TRAILER.unpack(trailer)[3]
    return Stamp(stat.st_size, stat.st_mtime_ns, f"xxh3_64:{digest:016x}")


def write_temp(obj: Object, directory: Path, name: str, durable: bool,
               metadata: dict[str, Any] | None = None,
               created: float | None = None) -> tuple[str, Stamp]:
    """Write ``obj`` to a temporary file beside ``directory/name`` (named after this process,
    see :func:`dryml.format._stale.make_temp`); returns its path and the stamp the file will
    have once renamed (a rename keeps the mtime). ``durable`` fsyncs it."""
    # drops dead writers' temps (now and then)
    fd, tmp = make_temp(os.path.join(directory, name))
    try:
        with open(fd, "wb", buffering=0) as stream:  # the writer gathers its own writes
            writer = _write(obj, stream, True, metadata, created)
            if durable:
                os.fsync(stream.fileno())
            # what read_stamp would read back: nothing is written after this
            stat = os.fstat(stream.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp, Stamp(stat.st_size, stat.st_mtime_ns, f"xxh3_64:{writer.digest:016x}")


def write_file(obj: Object, directory: Path, name: str, durable: bool,
               metadata: dict[str, Any] | None = None, created: float | None = None) -> Stamp:
    """Write ``obj`` to ``directory/name`` atomically; returns the file's stamp.

    The bytes go to a temporary file that is renamed over ``name`` only when complete, so a
    crash never leaves a partial ``.dry`` file. ``durable`` adds fsyncs (file and directory)
    for power-loss safety; without them the write is still safe against a killed process.
    """
    tmp, stamp = write_temp(obj, directory, name, durable, metadata, created)
    try:
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_directory(directory)
    return stamp


def row_from_file(path: Path, metadata: dict[str, Any] | None = None
                  ) -> tuple[Row, dict[str, list[str]], bool]:
    """An index row for ``path`` from its manifest; reads no member except small values
    that a definition holds inline. Returns (row, class MROs, whether the MROs are known).

    Raises DrymlError (or OSError) when the file is not a readable ``.dry`` file.
    """
    with open_regular(path) as stream:
        stamp = read_stamp(stream)
        with open_container(stream, None) as (reader, manifest):
            raw = reader.manifest
            definition = manifest_definition(raw, reader)
            mros, known = _file_mros(raw, definition)
            if metadata is None:
                stored = raw.get("metadata")
                metadata = stored if isinstance(stored, dict) else {}
                problem = metadata_problem(metadata)
                if problem is not None:  # the object is still indexed, and found
                    warnings.warn(f"{path.name}: its {problem}; it is indexed without its "
                                  "metadata", DrymlWarning, stacklevel=2)
                    metadata = {}
            created = _created(manifest.created, path)
    row = {"id": manifest.root, "cls": definition["cls"], "cat": category_digest(definition),
           "definition": json.dumps(definition), "metadata": json.dumps(metadata),
           "file": path.name, "size": stamp.size, "created": created,
           "digest": stamp.digest, "mtime": stamp.mtime}
    if not isinstance(row["cls"], str):
        raise FormatError("the root object has no class path")
    return row, mros, known


def _file_mros(raw: dict[str, Any], definition: dict[str, Any]
               ) -> tuple[dict[str, list[str]], bool]:
    """Class MROs of the classes a definition names: of a class this process already has,
    its own (a file claiming other bases for it made subclass queries return objects of
    another class); else from the manifest's optional ``classes`` table; else just the class
    itself. Nothing is imported."""
    stored = raw.get("classes")
    paths = set(_class_paths(definition))
    mros: dict[str, list[str]] = {}
    known = True
    for path in paths:
        mro = known_mro(path)
        entry = stored.get(path) if isinstance(stored, dict) else None
        if mro is None and isinstance(entry, list) and all(isinstance(p, str) for p in entry):
            mro = list(entry)
        known = known and mro is not None
        mros[path] = mro or [path]
    return mros, known


def _class_paths(value: Any) -> list[str]:
    out: list[str] = []
    if isinstance(value, list):
        for item in value:
            out += _class_paths(item)
    elif isinstance(value, dict):
        tag = value.get("__dry__")
        if tag == "class" and isinstance(value.get("path"), str):
            out.append(value["path"])
        if isinstance(value.get("cls"), str) and (tag == "def" or tag is None):
            out.append(value["cls"])
        for item in value.values():
            out += _class_paths(item)
    return out


def _created(stamp: str, path: Path) -> float:
    """The file's creation time, as a timestamp that converts back to a date (a valid stamp
    of "9999-12-31T23:59:59-23:59" is past year 9999 in UTC, and crashed 'repo show'); else
    the file's mtime."""
    try:
        created = datetime.datetime.fromisoformat(stamp).timestamp()
        datetime.datetime.fromtimestamp(created, datetime.UTC)
        return created
    except (TypeError, ValueError, OverflowError, OSError):
        with contextlib.suppress(OSError):
            return path.stat().st_mtime
        return time.time()


def describe_error(exc: BaseException) -> str:
    """One line saying why a file was skipped."""
    if isinstance(exc, DrymlError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
