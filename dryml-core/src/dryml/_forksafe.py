"""Locks that a process made by ``fork()`` gets unlocked.

``fork()`` copies only the thread that calls it: a lock that another thread held at that moment
stays held in the child forever, and the child's first save, load or repository add that needs
it hangs (``multiprocessing``'s default start method on Linux forks, e.g. a DataLoader or a
process pool started while a thread of the parent saves or loads). :class:`ForkSafeLock` is a
lock that every child starts with unlocked, as :mod:`logging` does for its handlers' locks.

A lock that the forking thread itself held is unlocked in the child too, and that thread's
releases of what it held before the fork are absorbed: a child of ``os.fork()`` returns through
the ``with`` block and releases it (which must not fail), while a ``multiprocessing`` child
never returns there (it runs its target and exits), so keeping the lock held would block every
other thread of the child for good. The price: in an ``os.fork()`` child, a thread that the
child starts inside that ``with`` block is not kept out of it.

What such a lock protected may have been mid-change in the copied memory; each user re-checks
its state after a fork (the index reopens its connection, a journal starts a new session), so
only the lock itself needs renewing.
"""

from __future__ import annotations

import os
import threading
import weakref
from types import TracebackType

__all__ = ["ForkSafeLock"]

_locks: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


class ForkSafeLock:
    """A ``threading.Lock`` (``RLock`` when ``reentrant``) that is unlocked in a forked child
    (unless the forking thread holds it). Use it as a context manager, or through ``acquire``
    / ``release``."""

    __slots__ = ("__weakref__", "_depth", "_lock", "_owed", "_owed_by", "_owner", "_reentrant")

    def __init__(self, reentrant: bool = False) -> None:
        self._reentrant = reentrant
        self._lock = self._new()
        self._owner: int | None = None  # the holding thread (set and cleared under the lock)
        self._depth = 0
        # in a forked child: the forking thread, and how many holds it took before the fork
        # (their releases are absorbed; the real lock was renewed unlocked)
        self._owed_by: int | None = None
        self._owed = 0
        _locks.add(self)

    def _new(self) -> threading.Lock | threading.RLock:
        return threading.RLock() if self._reentrant else threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire the lock (as :meth:`threading.Lock.acquire`)."""
        if not self._lock.acquire(blocking, timeout):
            return False
        self._owner = threading.get_ident()
        self._depth += 1
        return True

    def release(self) -> None:
        """Release the lock (as :meth:`threading.Lock.release`; an ``RLock`` only by its
        holder, which raises ``RuntimeError`` for any other thread and changes nothing)."""
        me = threading.get_ident()
        if self._owner == me and self._depth:  # stable: only the holder changes it
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
            self._lock.release()
        elif self._owed and self._owed_by == me:  # a hold from before the fork
            self._owed -= 1
        elif self._reentrant:
            self._lock.release()  # not this thread's: raises RuntimeError
        else:  # a plain lock may be released by a thread that did not acquire it
            if self._depth:
                self._depth, self._owner = 0, None
            self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def _renew(self) -> None:
        # Every lock is renewed (an unheld one too: another thread may have been between
        # acquiring it and noting itself as the owner); the forking thread's holds are owed.
        me = threading.get_ident()
        owed = self._owed if self._owed_by == me else 0
        if self._owner == me:
            owed += self._depth
        self._owed_by, self._owed = (me, owed) if owed else (None, 0)
        self._lock, self._owner, self._depth = self._new(), None, 0


def _renew_in_child() -> None:
    # Runs in the child right after fork, while it has a single thread.
    for lock in list(_locks):
        lock._renew()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_renew_in_child)
