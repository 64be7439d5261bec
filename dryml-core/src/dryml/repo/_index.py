"""The repository's SQLite index: schema, connections, transactions, rows.

Tables (all derived from the ``.dry`` files except ``intents``, which is a write-ahead list of
adds and deletes in flight, and metadata set after an object was added):

- ``objects``: one row per object: ``id``, ``cls``, ``cat`` (configuration digest),
  ``definition`` and ``metadata`` (JSON), ``file``, ``size``, ``created``, and what the file
  was when it was indexed: ``digest`` (the manifest checksum from the file's trailer) and
  ``mtime`` (nanoseconds). Both are NULL in rows written by dryml-core before they existed
  (filled by the next ``check``, ``reindex`` or load of the object).
- ``kv``: one row per top-level argument (``a.N``), keyword (``k.NAME``) and metadata path
  (``m.a.b``): type code ``t`` and scalar ``value``; indexed by ``(key, value)``.
- ``classes`` / ``class_bases``: every class a definition names, with its MRO (so that
  subclass queries need no import). ``info`` key :data:`CLASSES_GENERATION` changes whenever
  a reindex rebuilds them.
- ``intents``: adds and deletes that started and have not finished, with the owning process.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import stat
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from dryml._forksafe import ForkSafeLock
from dryml.errors import RepoError
from dryml.repo._defjson import category_digest, scalar_entries

__all__ = ["CLASSES_GENERATION", "FOREIGN_WRITE_TIMEOUT", "INDEX_NAME", "Index",
           "IndexDamagedError", "Row", "file_problem", "is_damage", "owner_alive",
           "process_identity", "schema_problem"]

INDEX_NAME = ".dryml-index.sqlite"
#: ``info`` key of a token that ``reindex`` renews whenever it rebuilds the class tables: a
#: process that caches which classes it recorded forgets them when the token changes.
CLASSES_GENERATION = "classes"
SCHEMA_VERSION = 1
#: How values are indexed (``info`` key ``values``). 2: +-infinity as REAL (type ``f``, also
#: when a definition writes it as a tagged value), integers beyond 64 bits as their nearest
#: double (type ``I``), and configuration digests that ignore the sign of zero and the order
#: of a dict with non-string keys. 3: metadata is plain JSON (a dict holding ``"__dry__"`` is
#: no tagged number there). 4: numpy integer and float arguments as their numbers (type
#: ``N``), which ranges find. 5: configuration digests that ignore the sign of a numpy zero
#: and the bits of a numpy NaN. An index from before is brought up to date on open.
VALUES_VERSION = "5"
# SQLite's automatic checkpoint copies the write-ahead log into the database file (with fsyncs)
# inside whichever commit crosses its threshold, so one add in about forty paid for the pages of
# the forty before it (measured: the median commit 67 us, the mean 278 us). A background thread
# of this process checkpoints instead, every CHECKPOINT_EVERY commits, off the caller's path
# (PASSIVE: it never blocks a reader or a writer), and syncs the database file after each;
# SQLite's own checkpoint stays as a backstop at WAL_BACKSTOP_PAGES (about 40 MB of log): in a
# burst of adds the thread never quite reaches the log's end, so that backstop is what starts
# the log over (see _Checkpointer._run).
CHECKPOINT_EVERY = 100
WAL_BACKSTOP_PAGES = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY, cls TEXT NOT NULL, cat TEXT NOT NULL, definition TEXT NOT NULL,
    metadata TEXT NOT NULL, file TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
    created REAL NOT NULL, digest TEXT, mtime INTEGER);
CREATE INDEX IF NOT EXISTS objects_cls ON objects (cls);
CREATE INDEX IF NOT EXISTS objects_cat ON objects (cat);
CREATE INDEX IF NOT EXISTS objects_created ON objects (created);
CREATE TABLE IF NOT EXISTS kv (
    id TEXT NOT NULL, key TEXT NOT NULL, t TEXT NOT NULL, value,
    PRIMARY KEY (id, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_value ON kv (key, value, t, id);
CREATE TABLE IF NOT EXISTS classes (path TEXT PRIMARY KEY, mro TEXT NOT NULL,
    known INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS class_bases (base TEXT NOT NULL, path TEXT NOT NULL,
    PRIMARY KEY (base, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intents (
    token TEXT PRIMARY KEY, op TEXT NOT NULL, id TEXT NOT NULL, file TEXT NOT NULL,
    host TEXT NOT NULL, pid INTEGER NOT NULL, pstart TEXT NOT NULL, started REAL NOT NULL,
    row TEXT);
CREATE INDEX IF NOT EXISTS intents_id ON intents (id);
"""

Row = dict[str, Any]
COLUMNS = ("id", "cls", "cat", "definition", "metadata", "file", "size", "created", "digest",
           "mtime")
# Columns added after the first release (an older index gets them on open: they may be NULL).
_ADDED = (("digest", "TEXT"), ("mtime", "INTEGER"))
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


class IndexDamagedError(RepoError):
    """The index file is not a readable SQLite database (garbage, truncated, malformed).
    ``dryml repo reindex DIR`` (or ``Repo(DIR, repair=True)``) rebuilds it from the files.
    ``reason`` is what SQLite said."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


#: The index file and the companions SQLite keeps beside it.
_COMPANIONS = ("", "-wal", "-shm", "-journal")
#: dryml's tables: none may be anything else, nor carry a trigger (a view put in place of a
#: table hung queries); a user's own may sit beside them.
_OURS = frozenset(("info", "objects", "kv", "classes", "class_bases", "intents"))


def file_problem(path: str) -> str | None:
    """Why the index file at ``path`` (or one of its companions) is not a regular file of its
    own, or None. SQLite follows a symbolic link: a link planted in a shared folder made
    dryml write its tables into a database elsewhere, and reindex wipe another repository's
    index."""
    for suffix in _COMPANIONS:
        try:
            info = os.lstat(path + suffix)
        except OSError:  # absent, or not to be examined: SQLite says what it finds
            continue
        name = os.path.basename(path + suffix)
        if stat.S_ISLNK(info.st_mode):
            return (f"{name} is a symbolic link, which dryml does not follow (SQLite would "
                    "write through it); reindex moves the link aside and leaves its target "
                    "alone")
        if not stat.S_ISREG(info.st_mode):
            return f"{name} is not a regular file"
    return None


def access_problem(path: str) -> str | None:
    """Why this user cannot open the index at ``path`` for writing, or None. Every open
    writes (the schema check, SQLite's write-ahead log and its shared-memory file beside the
    index): a user without write access got SQLite's "attempt to write a readonly database"
    as a traceback, and in a folder others may write to, left a log and shared-memory file
    of their own beside the index that then refused its owner."""
    directory = os.path.dirname(path) or "."
    for suffix in _COMPANIONS:
        name = path + suffix
        if os.path.lexists(name) and not os.access(name, os.W_OK):
            what = os.path.basename(name)
            if not suffix:
                return (f"{what} belongs to {_owner(name)} and is not writable by this user: "
                        "dryml writes to a repository's index whenever it opens it, to list "
                        "it too. Ask for write access to the folder and its files (a shared "
                        "group with g+w), or work on a copy")
            return (f"{what}, SQLite's {'log' if suffix == '-wal' else 'lock file'} of the "
                    f"index, belongs to {_owner(name)} and is not writable by this user (a "
                    "user without write access to the index left it): once no process has "
                    f"the repository open, remove {what} (SQLite makes it anew)")
    if os.path.isdir(directory) and not os.access(directory, os.W_OK | os.X_OK):
        return ("its folder is not writable by this user: dryml writes the index's log "
                "beside it whenever it opens a repository, to list it too. Ask for write "
                "access to the folder and its files, or work on a copy")
    return None


def _owner(path: str) -> str:
    """The name of the user who owns ``path`` (else its uid)."""
    try:
        uid = os.stat(path).st_uid
    except OSError:
        return "another user"
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name}"
    except (ImportError, KeyError):
        return f"user {uid}"


def schema_problem(conn: sqlite3.Connection) -> str | None:
    """Why the index's schema is not dryml's, or None: one of its tables that is something
    else (a view over an endless query hung every query), or a trigger on one of them (it
    would run on dryml's writes). A view or table of a user's own, beside dryml's, is left
    alone."""
    for name, kind, table in conn.execute("SELECT name, type, tbl_name FROM sqlite_master"):
        if name in _OURS and kind != "table":
            return f"its {name!r} is a {kind}, not the table dryml makes"
        if kind == "trigger" and table in _OURS:
            return f"it holds a trigger {name!r} on {table!r}, which dryml never makes"
    return None


def is_damage(exc: BaseException) -> bool:
    """Whether an SQLite error says the database file itself is damaged."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    if getattr(exc, "sqlite_errorname", None) in _DAMAGED:
        return True
    text = str(exc)
    return "malformed" in text or "not a database" in text


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (tells a live owner from a reused pid), or ''."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


_identity: tuple[str, int, str] | None = None


def process_identity() -> tuple[str, int, str]:
    """(host, pid, start time) of this process, recorded with each intent."""
    global _identity  # noqa: PLW0603 - computed once per process (and again after a fork)
    if _identity is None or _identity[1] != os.getpid():
        _identity = (socket.gethostname(), os.getpid(), _start_time(os.getpid()))
    return _identity


#: Seconds after which a replace or delete that another machine started counts as
#: abandoned (its process cannot be asked; a year-old one hid a swapped file from 'repo check'
#: and blocked deleting the object).
FOREIGN_WRITE_TIMEOUT = 24 * 3600.0


def owner_alive(host: str, pid: int, pstart: str, started: Any = None) -> bool:
    """Whether the process that recorded an intent may still be running. Another machine's
    cannot be asked: it counts as running, unless ``started`` (the time a replace or delete
    began; None for a session, which lasts as long as its process) is older than
    :data:`FOREIGN_WRITE_TIMEOUT`."""
    if host != socket.gethostname():
        return not (isinstance(started, (int, float))
                    and time.time() - started > FOREIGN_WRITE_TIMEOUT)
    if type(pid) is not int or not 0 < pid < 2**31:
        return False  # an index edited by hand: no process has that id
    if pid == os.getpid():
        return pstart == _start_time(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not pstart or pstart == _start_time(pid)


class Index:
    """One connection per process (reopened after ``fork``), serialised by a lock."""

    def __init__(self, path: str, durable: bool) -> None:
        self.path = path
        self.durable = durable
        self._lock = ForkSafeLock(reentrant=True)
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._commits = 0
        self._checkpointer: _Checkpointer | None = None

    # -- connection ---------------------------------------------------------------------------
    def conn(self) -> sqlite3.Connection:
        """The connection of this process (a fresh one after a fork)."""
        if self._conn is None or self._pid != os.getpid():
            problem = file_problem(self.path)
            if problem is not None:  # never opened: SQLite would follow it
                raise self.damaged(problem)
            problem = access_problem(self.path)
            if problem is not None:  # never opened: SQLite would leave files of this user
                raise RepoError(f"the repository {os.path.dirname(self.path)!r} cannot be "
                                f"opened: {problem}")
            try:
                conn = sqlite3.connect(self.path, timeout=120, isolation_level=None,
                                       check_same_thread=False)
                _retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
                conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
                conn.execute("PRAGMA foreign_keys=OFF")
                conn.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
            except sqlite3.DatabaseError as exc:
                if is_damage(exc):
                    raise self.damaged(exc) from None
                raise RepoError(f"the repository index {self.path!r} cannot be opened: {exc}. "
                                "Run 'dryml repo reindex DIR' to rebuild it from the .dry "
                                "files") from None
            self._conn, self._pid = conn, os.getpid()
            self._checkpointer, self._commits = None, 0  # a parent's thread is not ours
        return self._conn

    def damaged(self, exc: BaseException | str) -> IndexDamagedError:
        """The error for a damaged index file (what happened, and the command that fixes it)."""
        directory = os.path.dirname(self.path)
        return IndexDamagedError(
            f"the repository index {self.path!r} is damaged ({exc}). Run "
            f"'dryml repo reindex {directory}' (or open it with Repo(..., repair=True)) to "
            "rebuild it from the .dry files, which hold every object; the damaged index is "
            "kept beside them", str(exc))

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """SQLite's "malformed" / "not a database" errors as :class:`IndexDamagedError`."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise self.damaged(exc) from None
            raise

    def close(self) -> None:
        """Close this process's connection."""
        with self._lock:
            if self._checkpointer is not None and self._pid == os.getpid():
                self._checkpointer.stop()
            self._checkpointer = None
            if self._conn is not None and self._pid == os.getpid():
                # No ANALYZE / PRAGMA optimize: the planner's defaults suit these queries, and
                # statistics made it scan a whole class instead of the index (measured).
                self._conn.close()
            self._conn = None

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: writers queue, readers go on)."""
        with self._lock, self._translated():
            conn = self.conn()
            _retry(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # a damaged file may refuse it too
                    conn.execute("ROLLBACK")
                raise
            try:
                _retry(lambda: conn.execute("COMMIT"))
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # the connection stays usable
                    conn.execute("ROLLBACK")
                raise
            self._commits += 1
            if self._commits % CHECKPOINT_EVERY == 0:
                # Committed: nothing after this may fail the caller's write, which would
                # then undo the files of rows that are in the index (SQLite's own checkpoint
                # remains should the thread not start).
                with contextlib.suppress(Exception):
                    self._request_checkpoint()

    def _request_checkpoint(self) -> None:
        if self._checkpointer is None:
            self._checkpointer = _Checkpointer(self.path)
            # A Repo dropped without close() must not leave its thread behind.
            weakref.finalize(self, self._checkpointer.stop, wait=False)
        self._checkpointer.request()

    def locked(self) -> Any:
        """This process's lock of the index (reentrant), as a context manager: every read and
        write of it waits while a caller holds it."""
        return self._lock

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query and return every row."""
        with self._lock, self._translated():
            rows: list[tuple[Any, ...]] = _retry(
                lambda: self.conn().execute(sql, list(params)).fetchall())
            return rows

    def ensure_schema(self) -> bool:
        """Create the tables when missing; returns whether the index was already built."""
        with self.write() as conn:
            problem = schema_problem(conn)
            if problem is not None:
                raise self.damaged(problem)
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO info VALUES ('schema', ?)", (SCHEMA_VERSION,))
            found = conn.execute("SELECT value FROM info WHERE key = 'schema'").fetchone()
            if found and not str(found[0]).isdigit():  # edited by hand: not a newer one
                conn.execute("UPDATE info SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
                found = (SCHEMA_VERSION,)
            if found and int(found[0]) > SCHEMA_VERSION:
                raise RepoError(f"the index {self.path!r} was written by a newer dryml "
                                f"(schema {found[0]}); upgrade dryml-core")
            present = {r[1] for r in conn.execute("PRAGMA table_info(objects)").fetchall()}
            for column, kind in _ADDED:
                if column not in present:
                    conn.execute(f"ALTER TABLE objects ADD COLUMN {column} {kind}")
            values = conn.execute("SELECT value FROM info WHERE key = 'values'").fetchone()
            if values is None or values[0] != VALUES_VERSION:
                if values is None or _older(values[0], VALUES_VERSION):
                    _update_values(conn)
                # A newer dryml's index is not rewritten in this older form (the two would
                # rewrite each other's at every open); its version is lowered to this one's,
                # since this process indexes what it adds in its own form, and the newer
                # dryml's next open brings those entries up to date.
                conn.execute("INSERT OR REPLACE INTO info VALUES ('values', ?)",
                             (VALUES_VERSION,))
            return conn.execute("SELECT 1 FROM info WHERE key = 'built'").fetchone() is not None

    def integrity_problem(self) -> str | None:
        """What is wrong with the index file: not a regular file of its own
        (:func:`file_problem`), what SQLite's ``quick_check`` finds, or a schema that is not
        dryml's (:func:`schema_problem`); None when nothing is."""
        problem = file_problem(self.path)
        if problem is not None:
            return problem
        try:
            found = self.query("PRAGMA quick_check")
            lines = [str(r[0]) for r in found]
            if lines != ["ok"]:
                return "; ".join(lines[:3])
            with self._lock, self._translated():
                return schema_problem(self.conn())
        except IndexDamagedError as exc:
            return exc.reason

    # -- rows ---------------------------------------------------------------------------------
    @staticmethod
    def put_row(conn: sqlite3.Connection, row: Row) -> None:
        """Insert or replace one object's row and its kv entries."""
        definition = row.get("data") or json.loads(row["definition"])
        metadata = json.loads(row["metadata"])
        conn.execute(f"INSERT OR REPLACE INTO objects ({', '.join(COLUMNS)}) VALUES "
                     f"({', '.join('?' * len(COLUMNS))})", [row[c] for c in COLUMNS])
        Index.put_entries(conn, row["id"], definition, metadata, fresh=bool(row.get("new")))

    @staticmethod
    def put_entries(conn: sqlite3.Connection, dry_id: str, definition: dict[str, Any],
                    metadata: dict[str, Any], fresh: bool = False) -> None:
        """Replace one object's key/value entries (``fresh``: it has none yet)."""
        if not fresh:
            conn.execute("DELETE FROM kv WHERE id = ?", (dry_id,))
        conn.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?)",
                         [(dry_id, k, t, v) for k, t, v in scalar_entries(definition, metadata)])

    @staticmethod
    def put_metadata(conn: sqlite3.Connection, dry_id: str, metadata: dict[str, Any]) -> None:
        """Replace one object's metadata (and its kv entries)."""
        conn.execute("UPDATE objects SET metadata = ? WHERE id = ?", (json.dumps(metadata), dry_id))
        conn.execute("DELETE FROM kv WHERE id = ? AND key GLOB 'm.*'", (dry_id,))
        conn.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?)",
                         [(dry_id, k, t, v) for k, t, v in scalar_entries({}, metadata)])

    @staticmethod
    def remove_row(conn: sqlite3.Connection, dry_id: str) -> None:
        """Delete one object's row and kv entries."""
        conn.execute("DELETE FROM objects WHERE id = ?", (dry_id,))
        conn.execute("DELETE FROM kv WHERE id = ?", (dry_id,))

    @staticmethod
    def put_classes(conn: sqlite3.Connection, mros: dict[str, list[str]], known: bool) -> None:
        """Record class MROs: a known MRO replaces a guessed one (never the reverse) and a
        different known one (the class's bases changed: the index answers subclass queries
        with the hierarchy recorded last)."""
        for path, mro in mros.items():
            old = conn.execute("SELECT known, mro FROM classes WHERE path = ?",
                               (path,)).fetchone()
            if old is not None and ((old[0] and not known) or (
                    bool(old[0]) == known and old[1] == json.dumps(mro))):
                continue
            conn.execute("INSERT OR REPLACE INTO classes VALUES (?, ?, ?)",
                         (path, json.dumps(mro), int(known)))
            conn.execute("DELETE FROM class_bases WHERE path = ?", (path,))
            conn.executemany("INSERT OR IGNORE INTO class_bases VALUES (?, ?)",
                             [(base, path) for base in {path, *mro}])


def _older(found: Any, version: str) -> bool:
    """Whether the values version ``found`` in an index is older than ``version`` (anything
    that is not a version number is)."""
    return not (isinstance(found, str) and found.isdigit()) or int(found) < int(version)


def _update_values(conn: sqlite3.Connection) -> None:
    """Index anew, in the current form, the values an older dryml indexed differently: the
    key/value rows of objects that have an unindexed (``x``) value, and the configuration
    digest of definitions with a zero, a numpy value or a dict with non-string keys in them,
    and the entries of metadata that holds a "__dry__" key (plain JSON since values version
    3)."""
    stale = conn.execute(
        "SELECT id, definition, metadata FROM objects WHERE id IN "
        "(SELECT DISTINCT id FROM kv WHERE t = 'x') OR definition LIKE '%-0.0%' "
        "OR definition LIKE '%\"dict\"%' OR definition LIKE '%\"numpy.%' "
        "OR metadata LIKE '%__dry__%'").fetchall()
    for dry_id, definition, metadata in stale:
        data = json.loads(definition)
        conn.execute("UPDATE objects SET cat = ? WHERE id = ?", (category_digest(data), dry_id))
        Index.put_entries(conn, dry_id, data, json.loads(metadata))


class _Checkpointer:
    """A daemon thread with its own connection that checkpoints the index's write-ahead log
    when asked (``PASSIVE``: it copies what no reader still needs and never waits for a lock),
    then syncs the index file so that the checkpoint which finishes the log has little to sync.
    A checkpoint that is cut short (the process exits, a busy database) loses nothing: the log
    still holds every frame, and the next checkpoint or SQLite's own backstop copies it."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dryml-index-checkpoint",
                                        daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask for a checkpoint (returns at once)."""
        self._wake.set()

    def stop(self, wait: bool = True) -> None:
        """End the thread (after the checkpoint in progress, if any, when ``wait``)."""
        self._stopping = True
        self._wake.set()
        if wait and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        fd, synced = -1, None
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                with contextlib.suppress(sqlite3.Error, OSError):
                    if conn is None:
                        if file_problem(self._path) is not None:
                            continue  # the Repo's own connection reports it
                        conn = sqlite3.connect(self._path, timeout=0, isolation_level=None,
                                               check_same_thread=False)
                    done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if fd < 0:
                        fd = os.open(self._path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                    if done != synced:
                        # A checkpoint that stops short of the log's end copies pages into
                        # the index file without syncing it (SQLite syncs the file only when
                        # it reaches the end). Left so, every page of a long burst waited for
                        # the one checkpoint that does reach the end, SQLite's backstop inside
                        # a caller's COMMIT, whose sync then flushed ~40 MB (40-55 ms; 7-17 ms
                        # with this). A sync only makes written pages durable sooner: it
                        # changes nothing SQLite relies on.
                        _datasync(fd)
                        synced = done
        finally:
            if conn is not None:
                conn.close()
            if fd >= 0:
                os.close(fd)


#: fdatasync where the platform has it (the file's size and times need not be flushed).
_datasync = getattr(os, "fdatasync", os.fsync)


def _retry(fn: Any, attempts: int = 50) -> Any:
    """Run ``fn``, retrying while SQLite reports the database busy or locked."""
    for attempt in range(attempts):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if attempt == attempts - 1:
                raise RepoError(f"the repository index stayed locked: {exc}") from None
            time.sleep(min(0.01 * 2**attempt, 1.0))
    return None
