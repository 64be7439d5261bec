"""The thread that commits an index's open group of adds once it is old enough.

An add's index transaction may stay open for the adds that follow it to share its commit
(:meth:`dryml.repo._index.Index.write`); the next add commits the group when it finds it older
than the index's ``window``. This thread commits a group that no later add closes (the last
add of a burst), so other processes see it at most ``window`` seconds after it was made.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Protocol

__all__ = ["GroupFlusher"]


class _Committer(Protocol):
    def commit_due(self) -> float | None: ...


class GroupFlusher:
    """A daemon thread that commits an index's open group when it is due. It holds the index
    weakly: an index that is dropped ends it."""

    def __init__(self, index: _Committer) -> None:
        self._index = weakref.ref(index)
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dryml-index-commit",
                                        daemon=True)
        self._thread.start()

    def request(self) -> None:
        """A group was opened: commit it when it is due (returns at once)."""
        self._wake.set()

    def stop(self) -> None:
        """End the thread (it finishes a commit in progress; the index commits the rest)."""
        self._stopping = True
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait()
            self._wake.clear()
            while not self._stopping:
                index = self._index()
                left = None if index is None else index.commit_due()
                del index  # not kept alive while asleep
                if left is None:
                    break
                time.sleep(left)
