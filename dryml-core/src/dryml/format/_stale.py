"""Temporary files of interrupted writes: named after their writer, removed once it is gone.

``save_object`` writes a path through a temporary file beside it that is renamed over the
target when complete. A writer killed midway (SIGKILL, the OOM killer, a power cut) leaves the
temporary behind, as large as what it had written. :func:`make_temp` names each temporary after
its writer, ``.<name>.<host>-<pid>-<start>.<random>.tmp`` (the machine, the pid and the
kernel's start time of the writing process), and first removes the temporaries in that folder
whose writer has provably ended: same machine, and the pid is gone or now belongs to a process
that started at another time. A live writer's temporary is never touched; one written by
another machine (a shared file system) is removed once nothing has written to it for
:data:`ABANDONED_AFTER` seconds. A file whose name is not in this exact form is never a
temporary of dryml's, however old (a user's ``.notes.tmp`` beside a model was removed an hour
after its last change by the next save).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
import re
import secrets
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs

from dryml._forksafe import ForkSafeLock
from dryml._process import host_tag, process_alive, start_time

__all__ = ["ABANDONED_AFTER", "SWEEP_INTERVAL", "StaleTemp", "make_temp", "remove_stale_temps",
           "stale_temps", "swap_in", "temp_target"]

#: Seconds without a write after which a temporary that names no writer (or a writer on
#: another machine) counts as abandoned.
ABANDONED_AFTER = 3600.0
#: One process looks for stale temporaries in one folder at most this often (seconds), and
#: no more often than a hundred times as long as the last look took: listing a folder of
#: 10,000 files costs tens of milliseconds, more than saving a small object.
SWEEP_INTERVAL = 10.0

_SWEEP_SHARE = 100.0  # wait at least this many times as long as the last sweep took
_NAME_MAX = 255
_CREATE = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
           | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+)"
                   r"\.[0-9a-f]{8}\.tmp")
_swept: dict[str, float] = {}
_swept_lock = ForkSafeLock()


@attrs.frozen
class StaleTemp:
    """A temporary file left by a write that will never finish: ``path``, ``size`` in bytes,
    and ``why`` it is stale (which writer ended, or how long it has been untouched)."""

    path: Path
    size: int
    why: str


_writer: tuple[int, str, Iterator[int]] = (-1, "", iter(()))


def _writer_prefix(name: str) -> tuple[str, Iterator[int]]:
    """The start of this process's temporary names for ``name``, and its counter of them."""
    global _writer  # noqa: PLW0603 - this process's tag, read from /proc once (per fork)
    pid = os.getpid()
    if _writer[0] != pid:
        # a counter from a random start names the temporaries: os.urandom for each took
        # ~10 us of a save on a virtual machine
        _writer = (pid, f"{host_tag()}-{pid}-{start_time(pid) or '0'}",
                   itertools.count(secrets.randbits(32)))
    return f".{name}.{_writer[1]}.", _writer[2]


def make_temp(path: str | os.PathLike[str]) -> tuple[int, str]:
    """Create the temporary file for writing ``path`` (beside it, mode 0600, named after this
    process); returns ``(fd, temp path)`` like :func:`tempfile.mkstemp`. Stale temporaries of
    dead writers in that folder are removed first (at most every :data:`SWEEP_INTERVAL` s)."""
    directory, name = os.path.split(os.fspath(path))
    _sweep(directory or ".")
    prefix, counter = _writer_prefix(name)
    if len(prefix) + 12 > _NAME_MAX:  # a very long name: shortened, still named as ours
        prefix, counter = _writer_prefix(name[:_NAME_MAX - 12 - len(prefix) + len(name)])
    # what tempfile.mkstemp does (an exclusive create, mode 0600, never following a link),
    # without its per-call setup: this runs once per save
    tag = next(counter) & 0xFFFFFFFF
    for _ in range(100):
        tmp = os.path.join(directory, f"{prefix}{tag:08x}.tmp")
        try:
            return os.open(tmp, _CREATE, 0o600), tmp
        except FileExistsError:  # taken: random names from here (none planted ahead)
            tag = secrets.randbits(32)
    raise FileExistsError(f"no free temporary file name beside {os.fspath(path)!r}")


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    """glibc's ``renameat2`` (Linux 3.15+), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes  # only here: most processes never swap a file in

        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (ImportError, OSError, AttributeError):  # no ctypes (no libffi); not glibc 2.28+
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


#: File systems (``st_dev``) that cannot swap names (NFS, SMB, FUSE...): renamed there.
_no_swap: set[int] = set()


def _swap(fn: Callable[..., int], a: str, b: str | os.PathLike[str]) -> int:
    """Swap the names ``a`` and ``b`` atomically; 0, or the errno (then nothing changed)."""
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return 0
    import ctypes

    return ctypes.get_errno()


def swap_in(tmp: str, path: str | os.PathLike[str]) -> None:
    """Put the complete file ``tmp`` at ``path`` in one atomic step, as ``os.replace`` does (a
    reader, or a killed process at any moment, finds the old file or the new one there), for
    a write that does not promise to survive a power cut (``save_object(durable=False)``).

    Where ``path`` already holds a regular file, Linux swaps the two names
    (``renameat2(RENAME_EXCHANGE)``) and then removes the old file, now at ``tmp``. A plain
    rename over an existing file makes ext4 (``auto_da_alloc``) start writing the new file's
    data out before the rename returns, which took 0.1-1 ms of a 1 MB save, most of the gap
    to ``np.save``. That flush is also what makes a power cut on ext4 leave the old file or
    the new one; after a swap it may leave an empty file (docs/format.md), which is why a
    durable write renames. A process killed between the swap and the removal leaves the old
    file at ``tmp``, a temporary named after a dead writer that the next sweep removes."""
    fn = _renameat2()
    try:
        info = os.lstat(path)
    except OSError:
        info = None
    if fn is None or info is None or not stat.S_ISREG(info.st_mode) or info.st_dev in _no_swap:
        os.replace(tmp, path)
        return
    code = _swap(fn, tmp, path)
    if code in (errno.EINVAL, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS):  # cannot here
        _no_swap.add(info.st_dev)
    if code:
        os.replace(tmp, path)  # raises what a rename raises (ENOENT: gone meanwhile, ...)
        return
    try:
        os.unlink(tmp)  # the old file
    except IsADirectoryError:  # a folder was put at path meanwhile: give it its name back
        if _swap(fn, tmp, path):
            raise IsADirectoryError(errno.EISDIR, f"a folder was put at {os.fspath(path)!r} "
                                    f"while saving; it is now at {tmp!r}") from None
        os.replace(tmp, path)  # raises IsADirectoryError, as a rename over a folder does
    except OSError:
        pass  # the new file is in place; the old one stays as a temporary (swept later)


def _sweep(directory: str) -> None:
    key = os.path.abspath(directory)
    now = time.monotonic()
    with _swept_lock:
        due = _swept.get(key)
        if due is not None and now < due:
            return
        _swept[key] = now + SWEEP_INTERVAL
        if len(_swept) > 4096:
            _swept.clear()
    with contextlib.suppress(OSError):  # cleaning up is a courtesy: never fail a save for it
        remove_stale_temps(Path(directory))
    # A folder of 100,000 files takes tens of milliseconds to list: sweep it so rarely that
    # listing costs at most 1% of the time (a Repo's own writes are recovered through its
    # index anyway).
    took = time.monotonic() - now
    with _swept_lock:
        _swept[key] = max(_swept.get(key, 0.0), now + max(SWEEP_INTERVAL, _SWEEP_SHARE * took))


def stale_temps(directory: Path) -> list[StaleTemp]:
    """Every temporary file in ``directory`` whose write will never finish, by name."""
    found = []
    now = time.time()
    uid = os.getuid() if hasattr(os, "getuid") else None
    with os.scandir(directory) as entries:
        for entry in entries:
            if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode) or (uid is not None and info.st_uid != uid):
                continue  # only our own files: another user's writer cannot be checked
            why = _why_stale(entry.name, info.st_mtime, now)
            if why is not None:
                found.append(StaleTemp(Path(entry.path), info.st_size, why))
    return sorted(found, key=lambda t: t.path.name)


def temp_target(name: str) -> str | None:
    """The file name a temporary named ``name`` was being written for (possibly shortened,
    see :func:`make_temp`), or None when ``name`` is not a temporary of dryml's."""
    match = _TEMP.fullmatch(name)
    return None if match is None else match["name"]


def _why_stale(name: str, mtime: float, now: float) -> str | None:
    match = _TEMP.fullmatch(name)
    if match is None:
        return None  # not ours: never touched
    if match["host"] == host_tag():
        pid = int(match["pid"])
        start = "" if match["start"] == "0" else match["start"]
        if process_alive(pid, start):
            return None
        return f"its writer (pid {pid}) has ended"
    idle = now - mtime
    if idle >= ABANDONED_AFTER:
        return f"nothing has written to it for {idle / 3600:.1f} hours"
    return None


def remove_stale_temps(directory: Path) -> list[StaleTemp]:
    """Remove the stale temporaries of :func:`stale_temps`; returns those removed."""
    removed = []
    for temp in stale_temps(directory):
        try:
            temp.path.unlink()
        except OSError:
            continue
        removed.append(temp)
    return removed
