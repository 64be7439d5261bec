"""Keeping the index true to the files: recovery of interrupted writes, reindex, check."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from dryml._io import open_container
from dryml.repo._files import describe_error, is_repo_file, row_from_file, temp_files
from dryml.repo._index import Index, owner_alive

if TYPE_CHECKING:
    import sqlite3

__all__ = ["CheckReport", "ReindexReport", "check", "recover", "recover_intent", "reindex"]


@attrs.define
class ReindexReport:
    """What a reindex found: how many objects it indexed and which files it skipped, why."""

    indexed: int = 0
    skipped: list[tuple[str, str]] = attrs.field(factory=list)


@attrs.define
class CheckReport:
    """Whether the index matches the files. ``ok`` is True when it does; files that are not
    objects (foreign or corrupt and not indexed) are listed in ``skipped`` but are no fault."""

    objects: int = 0
    files: int = 0
    missing: list[str] = attrs.field(factory=list)
    unindexed: list[str] = attrs.field(factory=list)
    mismatched: list[tuple[str, str]] = attrs.field(factory=list)
    unreadable: list[tuple[str, str]] = attrs.field(factory=list)
    skipped: list[tuple[str, str]] = attrs.field(factory=list)
    in_progress: list[str] = attrs.field(factory=list)
    recovered: int = 0

    @property
    def ok(self) -> bool:
        """True when every indexed object has its file, intact, and every object file is
        indexed."""
        return not (self.missing or self.unindexed or self.mismatched or self.unreadable)

    def format(self) -> str:
        """A readable summary, one problem per line."""
        lines = [f"{self.objects} objects indexed, {self.files} object files"]
        lines += [f"MISSING FILE  {n} (indexed, file gone)" for n in self.missing]
        lines += [f"NOT INDEXED   {n} (run 'dryml repo reindex')" for n in self.unindexed]
        lines += [f"MISMATCH      {n}: {why}" for n, why in self.mismatched]
        lines += [f"UNREADABLE    {n}: {why}" for n, why in self.unreadable]
        lines += [f"skipped       {n}: {why}" for n, why in self.skipped]
        lines += [f"in progress   {n} (another process is writing it)" for n in self.in_progress]
        if self.recovered:
            lines.append(f"recovered {self.recovered} interrupted write(s)")
        lines.append("OK: the index matches the files" if self.ok else
                     "INCONSISTENT: run 'dryml repo reindex DIR' to rebuild the index")
        return "\n".join(lines)


def recover(index: Index, directory: Path) -> int:
    """Finish or undo the adds and deletes of processes that died midway; returns how many."""
    rows = index.query("SELECT token, host, pid, pstart FROM intents")
    dead = [r[0] for r in rows if not owner_alive(r[1], r[2], r[3])]
    if not dead:
        return 0
    done = 0
    with index.write() as conn:
        for token in dead:
            found = conn.execute("SELECT op, id, file, row FROM intents WHERE token = ?",
                                 (token,)).fetchone()
            if found is not None:
                recover_intent(conn, directory, *found)
                conn.execute("DELETE FROM intents WHERE token = ?", (token,))
                done += 1
    return done


def recover_intent(conn: sqlite3.Connection, directory: Path, op: str, dry_id: str, name: str,
                   prepared: str | None) -> None:
    """Finish (add: index the file if it is there and whole) or complete (delete: remove the
    file) one write whose process died."""
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
    if not path.exists():
        return
    metadata = None
    old = conn.execute("SELECT metadata FROM objects WHERE id = ?", (dry_id,)).fetchone()
    if prepared is not None and json.loads(prepared).get("metadata") is not None:
        metadata = json.loads(json.loads(prepared)["metadata"])
    elif old is not None:
        metadata = json.loads(old[0])
    try:
        row, mros, known = row_from_file(path, metadata)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by check, not indexed
        return
    if row["id"] == dry_id:
        Index.put_classes(conn, mros, known)
        Index.put_row(conn, row)


def _object_files(directory: Path) -> tuple[list[str], list[tuple[str, str]]]:
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


def reindex(index: Index, directory: Path) -> ReindexReport:
    """Rebuild the index from the ``.dry`` files, keeping metadata already in the index."""
    recover(index, directory)
    report = ReindexReport()
    with index.write() as conn:
        old_meta = dict(conn.execute("SELECT id, metadata FROM objects").fetchall())
        names, report.skipped = _object_files(directory)
        conn.execute("DELETE FROM objects")
        conn.execute("DELETE FROM kv")
        seen: dict[str, str] = {}
        for name in names:
            try:
                row, mros, known = row_from_file(directory / name, None)
            except Exception as exc:  # noqa: BLE001 - report the file, go on with the rest
                report.skipped.append((name, describe_error(exc)))
                continue
            if row["id"] in seen:
                report.skipped.append((name, f"dry_id {row['id']!r} is also in {seen[row['id']]}"))
                continue
            seen[row["id"]] = name
            if row["id"] in old_meta:
                row["metadata"] = old_meta[row["id"]]
            Index.put_classes(conn, mros, known)
            Index.put_row(conn, row)
            report.indexed += 1
        conn.execute("INSERT OR REPLACE INTO info VALUES ('built', '1')")
    report.skipped.sort()
    return report


def check(index: Index, directory: Path) -> CheckReport:
    """Compare the index with the files (reads every indexed file's manifest)."""
    report = CheckReport(recovered=recover(index, directory))
    rows = index.query("SELECT id, file, size FROM objects")
    live = {r[0]: r for r in index.query("SELECT file, host, pid, pstart FROM intents")}
    report.in_progress = sorted(live)
    report.objects = len(rows)
    names, report.skipped = _object_files(directory)
    on_disk = set(names)
    indexed_files = set()
    for dry_id, name, size in rows:
        indexed_files.add(name)
        if name not in on_disk:
            if name not in live:
                report.missing.append(name)
            continue
        problem = _check_file(directory / name, dry_id, size)
        if problem is not None:
            (report.unreadable if problem[0] else report.mismatched).append((name, problem[1]))
    for name in names:
        if name in indexed_files or name in live:
            continue
        try:
            with open_container(directory / name, None) as (_, manifest):
                root = manifest.root
        except Exception as exc:  # noqa: BLE001 - a foreign or corrupt file: skipped
            report.skipped.append((name, describe_error(exc)))
            continue
        report.unindexed.append(f"{name} (object {root!r})")
    report.files = len(names) - sum(1 for n, _ in report.skipped if n in on_disk)
    for tmp in temp_files(directory):
        owner = tmp.name[1:].split(".dry.")[0] + ".dry"
        if owner not in live:
            report.skipped.append((tmp.name, "a leftover temporary file"))
    report.skipped.sort()
    return report


def _check_file(path: Path, dry_id: str, size: int) -> tuple[bool, str] | None:
    try:
        actual = path.stat().st_size
        with open_container(path, None) as (_, manifest):
            root = manifest.root
    except Exception as exc:  # noqa: BLE001
        return True, describe_error(exc)
    if root != dry_id:
        return False, f"the index says {dry_id!r}, the file holds {root!r}"
    if actual != size:
        return False, f"the index says {size} bytes, the file has {actual}"
    return None

