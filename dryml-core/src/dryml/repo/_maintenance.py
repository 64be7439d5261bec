"""Keeping the index true to the files: recovery of interrupted writes, reindex, and
rebuilding a damaged index (``check`` is in ``_check``)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sqlite3
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from dryml.repo._defjson import metadata_problem
from dryml.repo._files import describe_error, file_name, is_repo_file, row_from_file, temp_files
from dryml.repo._index import CLASSES_GENERATION, Index, owner_alive
from dryml.repo._journal import finish_add, is_object_name, recover_session

__all__ = ["Duplicate", "ReindexReport", "object_files", "recover", "recover_intent",
           "reindex"]


@attrs.define
class Duplicate:
    """Files that hold the same object id. ``files[0]`` is the one the index uses (``indexed``)
    or the one ``reindex`` indexes: the file named ``<dry_id>.dry`` if there is one, else the
    first name in sort order. ``identical``: every file has the same manifest digest."""

    dry_id: str
    files: list[str]
    indexed: bool
    identical: bool

    @classmethod
    def of(cls, dry_id: str, files: Sequence[tuple[str, str | None]], indexed: bool
           ) -> Duplicate:
        """From (name, digest) pairs; ``indexed``: the first pair is the indexed file."""
        ordered = list(files) if indexed else sorted(files, key=lambda f: _preference(dry_id, f[0]))
        digests = {d for _, d in ordered}
        return cls(dry_id, [n for n, _ in ordered], indexed,
                   len(digests) == 1 and None not in digests)

    def summary(self) -> str:
        """Which files hold the id, and which one counts."""
        role = "indexed" if self.indexed else "reindex indexes it"
        kind = "identical copies" if self.identical else "files that differ"
        others = ", ".join(self.files[1:])
        return (f"object {self.dry_id!r} is in {len(self.files)} {kind}: {self.files[0]} "
                f"({role}), {others}")

    def advice(self, directory: str) -> str:
        """What to run to resolve it."""
        rm = "rm " + " ".join(shlex.quote(os.path.join(directory, n)) for n in self.files[1:])
        if self.identical:
            return f"remove the extra copies: {rm}"
        where = shlex.quote(directory)
        return (f"keep {self.files[0]}: {rm}; or keep another: remove the others and run "
                f"'dryml repo reindex {where}'")


@attrs.define
class ReindexReport:
    """What a reindex did: how many objects it indexed, which files it skipped and why,
    which ids it found in more than one file (and which file it indexed), and where it kept
    a damaged index that it replaced (``damaged_index``, else None)."""

    indexed: int = 0
    skipped: list[tuple[str, str]] = attrs.field(factory=list)
    duplicates: list[Duplicate] = attrs.field(factory=list)
    damaged_index: str | None = None
    damage: str | None = None
    salvaged: int = 0
    #: ids whose file changed since it was indexed: their metadata is the file's own (what
    #: was written with the object), not the index's, which described the old file
    changed: list[str] = attrs.field(factory=list)


def recover(index: Index, directory: Path) -> int:
    """Finish or undo the adds and deletes of processes that died midway; returns how many."""
    rows = index.query("SELECT token, host, pid, pstart, op, started FROM intents")
    dead = [r[0] for r in rows
            if not owner_alive(r[1], r[2], r[3], None if r[4] == "session" else r[5])]
    if not dead:
        return 0
    done = 0
    with index.write() as conn:
        for token in dead:
            found = conn.execute("SELECT op, id, file, row FROM intents WHERE token = ?",
                                 (token,)).fetchone()
            if found is None:
                continue
            if found[0] == "session":
                done += recover_session(conn, directory, found[2])
            else:
                recover_intent(conn, directory, *found)
                done += 1
            conn.execute("DELETE FROM intents WHERE token = ?", (token,))
    return done


def recover_intent(conn: sqlite3.Connection, directory: Path, op: str, dry_id: str, name: str,
                   prepared: str | None) -> None:
    """Finish (add: index the file if it is there and whole) or complete (delete: remove the
    file) one write whose process died. An intent naming anything but an object file of the
    repository (an index edited by hand: an absolute path, '../x') is dropped untouched."""
    if not is_object_name(name):
        return
    path = directory / name
    for tmp in temp_files(directory, name):
        with contextlib.suppress(OSError):
            tmp.unlink()
    if op == "delete":
        owner = conn.execute("SELECT id FROM objects WHERE file = ?", (name,)).fetchone()
        if owner is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return
    # the metadata the write was given, else (a save keeping it) what the index holds now
    old = conn.execute("SELECT metadata FROM objects WHERE id = ?", (dry_id,)).fetchone()
    recorded = _json_dict(prepared)
    metadata = _json_dict(recorded.get("metadata") if recorded else None)
    if metadata is None and old is not None:
        metadata = _json_dict(old[0])
    finish_add(conn, directory, dry_id, name, metadata)


def _json_dict(text: Any) -> dict[str, Any] | None:
    """The dict a JSON text in the index holds, or None (absent, or edited into something
    else: the file's own metadata is used then)."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or metadata_problem(value) is not None:
        return None  # too much to index (an index edited by hand): the file's is used
    return value


def object_files(directory: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(candidate object file names, foreign files with why) in ``directory``."""
    names: list[str] = []
    foreign: list[tuple[str, str]] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(".") or is_repo_file(entry.name):
                continue
            if not entry.is_file():
                foreign.append((entry.name, "not a file"))
            elif entry.name.endswith(".dry"):
                names.append(entry.name)
            else:
                foreign.append((entry.name, "not a .dry file"))
    return sorted(names), foreign


def _preference(dry_id: str, name: str) -> tuple[bool, str]:
    """Sort key: the file named after the id first, then by name (reindex is deterministic)."""
    return name != file_name(dry_id), name


def reindex(index: Index, directory: Path) -> ReindexReport:
    """Rebuild the index from the ``.dry`` files, keeping metadata already in the index
    (except for a file whose digest changed: it gets the metadata written in it).

    A damaged index file is first moved aside (kept, with the metadata that can still be read
    from it reused) and a new one is built. When several files hold one id, the file named
    ``<dry_id>.dry`` is indexed, else the first by name; the others are reported.
    """
    report = ReindexReport()
    old_meta: dict[str, str] | None = None
    report.damage = index.integrity_problem()
    if report.damage is not None:
        report.damaged_index, old_meta = set_aside(index)
        report.salvaged = len(old_meta)
    index.ensure_schema()
    recover(index, directory)
    with index.write() as conn:
        old_created: dict[str, float] = {}
        old_digest: dict[str, str | None] = {}
        if old_meta is None:
            old_rows = conn.execute("SELECT id, metadata, created, digest FROM objects"
                                    ).fetchall()
            # what an index edited by hand holds is kept only when it can be (metadata that
            # was not a JSON object made reindex, the repair, fail)
            old_meta = {i: m for i, m, _, _ in old_rows if _is_json_dict(m)}
            old_created = {i: c for i, _, c, _ in old_rows
                           if isinstance(c, (int, float)) and not isinstance(c, bool)}
            old_digest = {i: d for i, _, _, d in old_rows}
        names, report.skipped = object_files(directory)
        # a delete in flight (its process alive: recover() finished dead ones) has removed
        # its rows and is about to remove its files: indexing them would bring them back
        deleting = {f for (f,) in conn.execute("SELECT file FROM intents WHERE op = 'delete'")}
        names = [n for n in names if n not in deleting]
        conn.execute("DELETE FROM objects")
        conn.execute("DELETE FROM kv")
        # class hierarchies come from the files again (a class's bases may have changed)
        conn.execute("DELETE FROM classes")
        conn.execute("DELETE FROM class_bases")
        # every Repo open elsewhere forgets which classes it recorded (see Repo._class_tables)
        conn.execute("INSERT OR REPLACE INTO info VALUES (?, ?)",
                     (CLASSES_GENERATION, uuid.uuid4().hex))
        holders: dict[str, list[tuple[str, str | None]]] = {}
        for name in names:
            try:
                row, mros, known = row_from_file(directory / name, None)
            except Exception as exc:  # noqa: BLE001 - report the file, go on with the rest
                report.skipped.append((name, describe_error(exc)))
                continue
            found = holders.setdefault(row["id"], [])
            found.append((name, row["digest"]))
            if len(found) > 1 and _preference(row["id"], name) > _preference(
                    row["id"], found[0][0]):
                continue  # names come sorted: only the file named after the id goes first
            if len(found) > 1:
                found.insert(0, found.pop())
                row["new"] = False  # replaces the row of the file indexed before it
            else:
                row["new"] = True
                report.indexed += 1
            was = old_digest.get(row["id"])
            if was is not None and was != row["digest"]:
                report.changed.append(row["id"])  # another object now: the file's metadata
            else:
                if row["id"] in old_meta:
                    row["metadata"] = old_meta[row["id"]]
                if row["id"] in old_created:  # files made before 2026-12 hold whole seconds
                    row["created"] = old_created[row["id"]]
            Index.put_classes(conn, mros, known)
            Index.put_row(conn, row)
        conn.execute("INSERT OR REPLACE INTO info VALUES ('built', '1')")
    report.duplicates = [Duplicate.of(i, f, indexed=True) for i, f in sorted(holders.items())
                         if len(f) > 1]
    report.skipped.sort()
    return report


def set_aside(index: Index) -> tuple[str, dict[str, str]]:
    """Move a damaged index file (and its WAL companions) aside; returns where it went and
    the metadata (id -> JSON) still readable from it. A new, empty index replaces it."""
    index.close()
    kept = f"{index.path}.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(index.path + suffix, kept + suffix)  # a link is moved, not its target
    # read-only (a link's target too: only reading it, as the metadata of this folder's ids)
    return kept, _salvage(kept)


def _salvage(path: str) -> dict[str, str]:
    """Whatever ``id -> metadata`` rows can still be read from a damaged index (best effort:
    reading stops at the first damaged page)."""
    found: dict[str, str] = {}
    if not os.path.isfile(path):
        return found
    try:
        # as a URI, quoted: a folder named "run?1" lost "?mode=ro", and SQLite created a file
        # "run" beside the repository
        conn = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return found
    try:
        kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'objects'").fetchone()
        if kind != ("table",):  # a view in its place could run without end
            return found
        for dry_id, metadata in conn.execute("SELECT id, metadata FROM objects"):
            if isinstance(dry_id, str) and _is_json_dict(metadata):
                found[dry_id] = metadata
    except sqlite3.Error:
        pass
    finally:
        conn.close()
    return found


def _is_json_dict(text: Any) -> bool:
    return _json_dict(text) is not None

