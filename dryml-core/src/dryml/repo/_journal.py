"""One-transaction adds of new objects, made safe against a killed process by a journal.

Adding an object that is not yet in the repository (``add_object`` with ``replace=False``)
writes its file to a temporary name first, then in ONE index transaction checks the id,
inserts the row, appends ``[dry_id, file]`` to this process's journal, renames the temporary
into place and commits. A process killed before the rename leaves only a temporary; killed
after it, a complete file that the index does not list yet. The journal is what lets the next
open find that file without listing the directory: each process that adds registers one
``session`` intent in the index (naming its journal file, ``.dryml-index.sqlite.adds-<token>``)
before its first add, and when that process is gone :func:`recover_session` indexes every file
its journal lists that the index does not already hold as it is, removes the temporaries of
dead writers and drops the journal. This replaces the per-add intent transaction (one commit
per add instead of two); replacing or deleting an object keeps the per-id intents of
:mod:`dryml.repo._maintenance`.

Entries of adds that committed are useless, so the journal is emptied once it passes
:data:`TRIM_AT` bytes (between two adds, when every entry in it belongs to a committed add).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import time
import uuid
from pathlib import Path
from typing import Any

from dryml._forksafe import ForkSafeLock
from dryml._io import fsync_directory
from dryml.errors import RepoError
from dryml.format._stale import remove_stale_temps
from dryml.repo._files import row_from_file
from dryml.repo._index import INDEX_NAME, Index, process_identity

__all__ = ["JOURNAL_PREFIX", "TRIM_AT", "Journal", "finish_add", "recover_session"]

JOURNAL_PREFIX = f"{INDEX_NAME}.adds-"
TRIM_AT = 16 * 1024  # about 200 entries: what a crash recovery may have to look at
_OPEN = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
         | getattr(os, "O_CLOEXEC", 0))


class Journal:
    """This process's journal of adds for one repository (see the module docstring)."""

    def __init__(self, index: Index, directory: Path) -> None:
        self._index = index
        self._directory = directory
        self._pid = -1
        self._fd = -1
        self._token = ""
        self._name = ""
        self._size = 0
        self._lock = ForkSafeLock()

    def ensure(self, durable: bool) -> None:
        """Register this process's session (its own committed transaction) and open its
        journal, unless done already; after a fork the child starts its own."""
        if self._pid == os.getpid():
            return
        with self._lock:  # two threads' first adds: one session
            if self._pid != os.getpid():
                self._start(durable)

    def _start(self, durable: bool) -> None:
        # The intent first, then the file: a process killed in between leaves an intent
        # whose journal is missing, which recovery drops; the other way round, one killed
        # while waiting for the index would leave a journal that nothing ever removes.
        token = uuid.uuid4().hex
        name = f"{JOURNAL_PREFIX}{token}"
        host, pid, pstart = process_identity()
        with self._index.write() as conn:
            conn.execute("INSERT INTO intents VALUES (?, 'session', '', ?, ?, ?, ?, ?, NULL)",
                         (token, name, host, pid, pstart, time.time()))
        try:
            fd = os.open(self._directory / name, _OPEN, 0o600)
        except BaseException:
            with contextlib.suppress(Exception), self._index.write() as conn:
                conn.execute("DELETE FROM intents WHERE token = ?", (token,))
            raise
        if durable:
            fsync_directory(self._directory)
        self._pid, self._fd, self._token, self._name, self._size = os.getpid(), fd, token, name, 0

    def record(self, entries: list[tuple[str, str]], durable: bool) -> None:
        """Append ``(dry_id, file)`` entries; call inside the add's write transaction, before
        its renames (every earlier add has committed by then, so a long journal is emptied)."""
        if self._pid != os.getpid():
            raise RepoError("the repository was closed while an add was under way; add again")
        if self._size > TRIM_AT:
            os.ftruncate(self._fd, 0)
            self._size = 0
        data = "".join(json.dumps([i, n]) + "\n" for i, n in entries).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._size += len(data)
        if durable:
            os.fsync(self._fd)

    def close(self) -> None:
        """End the session: drop the journal, then its intent (a crash in between leaves an
        intent without a journal, which recovery simply drops)."""
        if self._pid != os.getpid():
            self._pid = -1  # a parent's session: the parent ends it
            return
        try:
            # in a write transaction: an add of another thread, which journals inside its
            # own, is never cut in half (nor writes to a closed, perhaps reused, descriptor)
            with self._index.write() as conn:
                self._drop_file()
                conn.execute("DELETE FROM intents WHERE token = ?", (self._token,))
        except Exception:  # noqa: BLE001 - at exit, or a damaged index: the next open recovers
            self._drop_file()

    def _drop_file(self) -> None:
        if self._pid != os.getpid():
            return
        self._pid = -1
        with contextlib.suppress(OSError):
            os.close(self._fd)
        with contextlib.suppress(OSError):
            os.unlink(self._directory / self._name)


def finish_add(conn: sqlite3.Connection, directory: Path, dry_id: str, name: str,
               metadata: dict[str, Any] | None = None) -> bool:
    """Index ``directory/name`` for ``dry_id`` unless the index already holds it as it is
    (same file, size and mtime); returns whether it indexed it. ``metadata`` replaces what
    the file holds (a replace's intent records it). An unreadable file, or one that holds
    another object, is left for ``check`` to report."""
    if not is_object_name(name):
        return False
    path = directory / name
    try:
        on_disk = path.stat()
    except OSError:
        return False  # killed before its rename: there is nothing to finish
    found = conn.execute("SELECT file, size, mtime FROM objects WHERE id = ?",
                         (dry_id,)).fetchone()
    if found is not None and tuple(found) == (name, on_disk.st_size, on_disk.st_mtime_ns):
        return False  # its add committed
    try:
        row, mros, known = row_from_file(path, metadata)  # else the metadata in the file
    except Exception:  # noqa: BLE001 - an unreadable file is reported by check, not indexed
        return False
    if row["id"] != dry_id:
        return False
    Index.put_classes(conn, mros, known)
    Index.put_row(conn, row)
    return True


def recover_session(conn: sqlite3.Connection, directory: Path, name: str) -> int:
    """Finish the adds of a dead process's journal ``name`` (see :func:`finish_add`), remove
    dead writers' temporaries and the journal; returns how many adds it finished."""
    done = 0
    if _plain_name(name, JOURNAL_PREFIX):
        path = directory / name
        for line in _read_journal(path).splitlines():
            try:
                dry_id, file = json.loads(line)
            except ValueError:
                continue  # a torn last line: that add never reached its rename
            if not (isinstance(dry_id, str) and isinstance(file, str)):
                continue
            if conn.execute("SELECT 1 FROM intents WHERE id = ? AND op != 'session'",
                            (dry_id,)).fetchone():
                continue  # being replaced or deleted since: that write (or its recovery) ends it
            done += finish_add(conn, directory, dry_id, file)
        with contextlib.suppress(OSError):
            remove_stale_temps(directory)  # lists the folder once: only after a crash
        with contextlib.suppress(OSError):
            path.unlink()
    return done


def _read_journal(path: Path) -> str:
    """A dead session's journal, or "" when it cannot be read or is not a regular file (a FIFO,
    or a link to /dev/zero, named as a journal hung every open)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return stream.read().decode("utf-8", errors="replace")


def is_object_name(name: object) -> bool:
    """Whether ``name`` (read from the index or a journal, which may have been edited by
    hand) is an object file of the repository: a plain ``.dry`` name, no path."""
    return (isinstance(name, str) and _plain_name(name) and name.endswith(".dry")
            and not name.startswith("."))


def _plain_name(name: str, prefix: str = "") -> bool:
    """A file directly in the repository (a journal may have been edited by hand)."""
    return (bool(name) and name == os.path.basename(name) and name not in (".", "..")
            and name.startswith(prefix) and "\0" not in name)
