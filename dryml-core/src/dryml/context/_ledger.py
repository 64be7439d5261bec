"""The machine-wide ledger: GPU shares and CPUs granted by every dryml process of this user.

Each process's :class:`~dryml.context._scheduler.Scheduler` grants its own workers; the ledger
lets independent processes (two notebooks, a notebook and a script) see each other's grants,
so that together they never give out more than 1.0 of a GPU or of a CPU. It is a small SQLite
database in a per-user directory (``$DRYML_LEDGER_DIR``, else ``/dev/shm/dryml-<uid>``, else
``/tmp/dryml-<uid>``, whatever ``TMPDIR`` or ``XDG_RUNTIME_DIR`` say, created with mode 0700). A row
names the process holding a grant by pid *and* kernel start time, so the grants of a process
that died (SIGKILL included) are dropped by the next process that looks, and a reused pid is
never taken for the holder.

GPUs are keyed by uuid (processes that see different ``CUDA_VISIBLE_DEVICES`` agree on which
device is which), CPUs by the operating system's CPU number (``cpu:3``; processes with
different affinity masks agree too). Pretend devices (a ``FakeGpuProvider``'s GPUs, CPUs that
no ``os_cpu`` names) stay per process unless their ``info`` has ``ledger=True`` (tests declare
such devices to exercise the ledger). Only CPUs a requirement names (``num_cpus``, ``cpu/N``)
are recorded: the one CPU a requirement that names none gets by default is accounted in its
own process only, so ordinary use and parallel test runs never wait for each other's idle
workers.

``DRYML_LEDGER=process`` turns the ledger off: each process accounts only for its own workers.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs

from dryml._process import host_tag, process_alive, process_command, start_time
from dryml.context._resources import Resource, share_units
from dryml.errors import ConfigurationError, ResourcesUnavailableError

__all__ = ["Holding", "Ledger", "ledger_dir", "ledger_enabled", "ledger_key", "open_ledger"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS grants (
    pid INTEGER NOT NULL, pstart TEXT NOT NULL, command TEXT NOT NULL,
    grant_id INTEGER NOT NULL, resource TEXT NOT NULL, name TEXT NOT NULL,
    amount REAL NOT NULL, since REAL NOT NULL
)
"""
_FILE = "ledger.sqlite"


@attrs.frozen
class Holding:
    """One grant row: ``amount`` of ``resource`` (a GPU uuid or ``cpu:N``; ``name`` is what the
    holder calls it, e.g. ``gpu/0``) held by process ``pid`` running ``command`` since ``since``."""

    pid: int
    command: str
    resource: str
    name: str
    amount: float
    since: float
    #: held by a process of another PID namespace or machine: it cannot be checked from here
    elsewhere: bool = False

    def describe(self) -> str:
        """``"0.7 of gpu/0 (GPU-...) held by pid 123 (python train.py)"``."""
        return (f"{self.amount:g} of {self.name} ({self.resource}) held by pid {self.pid} "
                f"({self.command or 'command unknown'})")


def ledger_enabled() -> bool:
    """False when ``DRYML_LEDGER=process`` asks for per-process accounting."""
    mode = os.environ.get("DRYML_LEDGER", "machine").strip().lower() or "machine"
    if mode not in ("machine", "process"):
        raise ConfigurationError(
            f"DRYML_LEDGER must be 'machine' (the default: one accounting of GPU shares and CPUs "
            f"for every dryml process on this machine) or 'process', got {mode!r}")
    return mode == "machine"


def ledger_dir() -> Path:
    """The per-user directory that holds the ledger (see the module docstring)."""
    explicit = os.environ.get("DRYML_LEDGER_DIR")
    if explicit:
        return Path(explicit)
    if not hasattr(os, "getuid"):  # Windows: the temporary folder is the user's own
        return Path(tempfile.gettempdir()) / "dryml"
    # One place for every process of this user whatever its environment (not XDG_RUNTIME_DIR,
    # then TMPDIR, which differ between a login shell, cron, su, a service and a batch job:
    # two programs that saw different ones each got 0.7 of one GPU). /dev/shm is shared even
    # with services that have a /tmp of their own.
    shm = "/dev/shm"  # noqa: S108 - the folder below is made 0700 and checked
    usable = os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK)  # not under confinement
    shared = shm if usable else "/tmp"  # noqa: S108
    return Path(shared) / f"dryml-{os.getuid()}"


def ledger_key(resource: Resource) -> str | None:
    """The machine-wide name of ``resource`` in the ledger, or None if it is per process."""
    info = resource.info
    if resource.kind == "cpu":
        if info.get("ledger"):
            return f"cpu:{info.get('os_cpu', resource.index)}"
        os_cpu = info.get("os_cpu")
        return None if os_cpu is None else f"cpu:{os_cpu}"
    if resource.kind != "gpu":
        return None
    if info.get("fake") and not info.get("ledger"):
        return None
    return str(info.get("uuid") or resource.name)


class Ledger:
    """The ledger database of one directory; one connection per process, used under a lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / _FILE
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._me: tuple[int, str, str] | None = None
        self._file: tuple[int, int] | None = None  # (device, inode) of the file opened
        #: This process's rows, by grant id: written again into a ledger file that replaced
        #: the one they were recorded in.
        self.mine: dict[int, dict[str, tuple[str, float]]] = {}

    def _connect(self) -> tuple[sqlite3.Connection, bool]:
        """The connection, and whether it was opened on a file that does not hold this
        process's rows yet (a first open, or a file deleted and made anew: a tmp cleaner or a
        logout removed the folder under a live process, whose grants then counted for nothing
        while it got raw sqlite errors)."""
        if self._conn is not None and self._pid == os.getpid() and self._same_file():
            return self._conn, False
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        if self._pid != os.getpid():  # a forked child holds none of its parent's grants
            self.mine = {}
        _private_dir(self.directory)
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        _schema(conn)
        info = os.stat(self.path)
        self._conn, self._pid, self._file = conn, os.getpid(), (info.st_dev, info.st_ino)
        pid = os.getpid()
        self._me = (pid, start_time(pid), process_command(pid) or " ".join(sys.argv))
        return conn, True

    def _same_file(self) -> bool:
        try:
            info = os.stat(self.path)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self._file

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """An exclusive transaction (other processes wait), with dead holders dropped."""
        with self._lock:
            try:
                conn, fresh = self._connect()
                conn.execute("BEGIN IMMEDIATE")
            except (sqlite3.Error, OSError) as exc:
                raise self._unusable(exc) from exc
            assert self._me is not None
            before = dict(self.mine)
            try:
                tx = Transaction(conn, self._me, self.mine)
                if fresh or self.mine:
                    # also a file truncated in place (same inode): its rows are gone, and
                    # this process's grants would count for nothing
                    if not fresh:
                        _schema(conn)
                    tx.record_again()
                tx.drop_dead()
                yield tx
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                self.mine.clear()  # as the file is again
                self.mine.update(before)
                if isinstance(exc, sqlite3.Error):
                    raise self._unusable(exc) from exc
                raise

    def _unusable(self, exc: BaseException) -> ResourcesUnavailableError:
        return ResourcesUnavailableError(
            f"the machine-wide resource ledger {self.path} cannot be used ({exc}); fix or "
            "remove it, point DRYML_LEDGER_DIR elsewhere, or set DRYML_LEDGER=process for "
            "per-process accounting")

    def release(self, grant_id: int) -> None:
        """Forget this process's rows of grant ``grant_id``."""
        with self.transaction() as tx:
            tx.release(grant_id)

    def holdings(self) -> list[Holding]:
        """Every grant on the machine (dead holders dropped first)."""
        with self.transaction() as tx:
            return tx.holdings(others_only=False)

    def forget(self, pid: int) -> int:
        """Drop the grants of process ``pid`` (``dryml resources --forget``): for a holder
        of another PID namespace that is gone for good (a container), whose grants no
        process here can check. Returns how many rows there were."""
        with self.transaction() as tx:
            return tx.forget(pid)


class Transaction:
    """What a process may do with the ledger while it holds the write lock."""

    def __init__(self, conn: sqlite3.Connection, me: tuple[int, str, str],
                 mine: dict[int, dict[str, tuple[str, float]]] | None = None) -> None:
        self.conn = conn
        self.pid, self.pstart, self.command = me
        self.mine = {} if mine is None else mine

    def record_again(self) -> None:
        """Write this process's rows that a ledger file lacks (one made anew) into it."""
        for grant_id, amounts in self.mine.items():
            if not self.conn.execute(
                    "SELECT 1 FROM grants WHERE pid = ? AND pstart = ? AND grant_id = ? AND "
                    "place IS ?", (self.pid, self.pstart, grant_id, _namespace())).fetchone():
                self._insert(grant_id, amounts)

    def drop_dead(self) -> None:
        """Delete the rows of processes that have ended (or whose pid was reused). A row of
        another PID namespace or machine (a container sharing ``/dev/shm``, a ledger on a
        shared file system) cannot be checked: its pid means another process here, and
        taking it for dead gave its GPU share out twice. It stays until a process that can
        check it looks (``dryml resources`` shows it)."""
        owners = self.conn.execute("SELECT DISTINCT pid, pstart, place FROM grants").fetchall()
        here = _namespace()
        for pid, pstart, place in owners:
            _check_row(pid, pstart)
            mine = pid == self.pid and pstart == self.pstart and place == here
            if mine or (place is not None and place != here):  # None: an older dryml's row
                continue
            if not process_alive(pid, pstart):
                self.conn.execute("DELETE FROM grants WHERE pid = ? AND pstart = ? AND "
                                  "place IS ?", (pid, pstart, place))

    def holdings(self, others_only: bool = True) -> list[Holding]:
        """Rows of other processes (or of every process)."""
        rows = self.conn.execute(
            "SELECT pid, pstart, command, resource, name, amount, since, place FROM grants "
            "ORDER BY since, pid").fetchall()
        here = _namespace()
        for pid, pstart, command, resource, name, amount, since, _ in rows:
            _check_row(pid, pstart, amount, command, resource, name, since)
        # this process's rows are those of its pid, start time and place: a process of
        # another PID namespace may have the same pid (and, started in the same tick, the
        # same start time)
        return [Holding(pid, command, resource, name, amount, since,
                        place is not None and place != here)
                for pid, pstart, command, resource, name, amount, since, place in rows
                if not (others_only and pid == self.pid and pstart == self.pstart
                        and place == here)]

    def forget(self, pid: int) -> int:
        """Delete the rows of process ``pid`` of another PID namespace or machine (never a
        row this process can check: a pid there is another process); how many there were."""
        return int(self.conn.execute(
            "DELETE FROM grants WHERE pid = ? AND place IS NOT NULL AND place != ?",
            (pid, _namespace())).rowcount)

    def used_by_others(self) -> dict[str, int]:
        """Millionths of each ledger resource that other processes hold (whole numbers add up
        exactly; see :func:`~dryml.context._resources.share_units`)."""
        used: dict[str, int] = {}
        for holding in self.holdings():
            used[holding.resource] = used.get(holding.resource, 0) + share_units(holding.amount)
        return used

    def record(self, grant_id: int, amounts: Mapping[str, tuple[str, float]]) -> None:
        """Record ``{ledger key: (name, amount)}`` as held by this process for ``grant_id``."""
        self._insert(grant_id, amounts)
        self.mine[grant_id] = dict(amounts)

    def _insert(self, grant_id: int, amounts: Mapping[str, tuple[str, float]]) -> None:
        now = time.time()
        place = _namespace()
        self.conn.executemany(
            "INSERT INTO grants (pid, pstart, command, grant_id, resource, name, amount, since, "
            "place) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(self.pid, self.pstart, self.command, grant_id, key, name, amount, now, place)
             for key, (name, amount) in amounts.items()])

    def release(self, grant_id: int) -> None:
        """Delete this process's rows of ``grant_id``."""
        self.conn.execute("DELETE FROM grants WHERE pid = ? AND pstart = ? AND grant_id = ? "
                          "AND place IS ?", (self.pid, self.pstart, grant_id, _namespace()))
        self.mine.pop(grant_id, None)


@functools.cache
def _namespace() -> str:
    """This machine and PID namespace (``machine-inode``): a pid means a process only there.
    The machine by its ``/etc/machine-id`` where it has one (a renamed host is the same
    machine, and so is one rebooted: its own dead grants are then checked and dropped), else
    its host name."""
    machine = host_tag()
    with contextlib.suppress(OSError), open("/etc/machine-id") as found:
        machine = found.read().strip() or machine
    try:
        return f"{machine}-{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # not Linux: the machine alone
        return machine


def _schema(conn: sqlite3.Connection) -> None:
    """The grants table, with the ``place`` column (machine and PID namespace of the row's
    process) that a ledger an older dryml made lacks (its rows have none: NULL)."""
    conn.execute(_SCHEMA)
    if "place" not in {row[1] for row in conn.execute("PRAGMA table_info(grants)")}:
        with contextlib.suppress(sqlite3.OperationalError):  # another process added it
            conn.execute("ALTER TABLE grants ADD COLUMN place TEXT")


def _check_row(pid: object, pstart: object, amount: object = 0.5, *text: object) -> None:
    """A row as dryml writes it, else sqlite3.DataError (the ledger is then said to be
    unusable, with the fix): edited by hand, a text amount raised bare TypeErrors in every
    call and a negative one was trusted, so more than a whole GPU was given out."""
    if not (type(pid) is int and pid > 0 and isinstance(pstart, str)
            and type(amount) in (int, float) and 0 < amount <= 1  # type: ignore[operator]
            and all(isinstance(t, (str, int, float)) for t in text)):
        raise sqlite3.DataError(f"a grant row that dryml did not write (pid {pid!r}, "
                                f"amount {amount!r})")


def _private_dir(directory: Path) -> None:
    """Create ``directory`` (0700) or check that it is ours and not writable by others."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise ConfigurationError(
            f"the dryml resource ledger directory {directory} belongs to another user; set "
            "DRYML_LEDGER_DIR to a directory of yours, or DRYML_LEDGER=process")
    if info.st_mode & 0o022:
        raise ConfigurationError(
            f"the dryml resource ledger directory {directory} is writable by others; make it "
            f"private (chmod 700 {directory}) or set DRYML_LEDGER_DIR")


_ledgers: dict[Path, Ledger] = {}
_ledgers_lock = threading.Lock()


def open_ledger() -> Ledger | None:
    """This process's ledger for the current settings, or None under ``DRYML_LEDGER=process``."""
    if not ledger_enabled():
        return None
    directory = ledger_dir().absolute()
    with _ledgers_lock:
        ledger = _ledgers.get(directory)
        if ledger is None:
            ledger = _ledgers[directory] = Ledger(directory)
        return ledger
