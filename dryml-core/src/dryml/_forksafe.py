"""Locks that a process made by ``fork()`` gets unlocked.

``fork()`` copies only the thread that calls it: a lock that another thread held at that moment
stays held in the child forever, and the child's first save, load or repository add that needs
it hangs (``multiprocessing``'s default start method on Linux forks, e.g. a DataLoader or a
process pool started while a thread of the parent saves or loads). :class:`ForkSafeLock` is a
lock that every child starts with unlocked, as :mod:`logging` does for its handlers' locks,
unless the thread that forked holds it: that thread goes on in the child and releases it.

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

    __slots__ = ("__weakref__", "_depth", "_lock", "_owner", "_reentrant")

    def __init__(self, reentrant: bool = False) -> None:
        self._reentrant = reentrant
        self._lock = self._new()
        self._owner: int | None = None  # the holding thread (set and cleared under the lock)
        self._depth = 0
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
        """Release the lock."""
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def _renew(self) -> None:
        # Renewed unless the forking thread holds it (an unheld one too: another thread may
        # have been between acquiring it and noting itself as the owner).
        if self._owner != threading.get_ident():
            self._lock, self._owner, self._depth = self._new(), None, 0


def _renew_in_child() -> None:
    # Runs in the child right after fork, while it has a single thread.
    for lock in list(_locks):
        lock._renew()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_renew_in_child)
