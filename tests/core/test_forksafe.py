"""The locks dryml holds while saving, loading and indexing, across fork()."""

from __future__ import annotations

import os
import threading

import pytest
from forking import run_forked

from dryml._forksafe import ForkSafeLock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")


@pytest.mark.parametrize("reentrant", [False, True])
def test_a_lock_another_thread_holds_is_free_in_the_child(reentrant: bool) -> None:
    lock = ForkSafeLock(reentrant=reentrant)
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            done.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(30)
    try:
        def child() -> None:
            assert lock.acquire(timeout=5)
            lock.release()

        assert run_forked(child) == 0
        assert not lock.acquire(blocking=False)  # the parent's thread still holds it
    finally:
        done.set()
        thread.join(30)
    with lock:  # and it is released in the parent as usual
        pass


@pytest.mark.parametrize("reentrant", [False, True])
def test_a_lock_the_forking_thread_holds_stays_its_own_in_the_child(reentrant: bool) -> None:
    lock = ForkSafeLock(reentrant=reentrant)

    def child() -> None:
        lock.release()  # the child leaves the block it forked in ...
        assert lock.acquire(timeout=5)  # ... and the lock works as before
        lock.release()

    with lock:
        assert run_forked(child) == 0
    assert lock.acquire(blocking=False)
    lock.release()


def test_a_reentrant_lock_counts_its_depth() -> None:
    lock = ForkSafeLock(reentrant=True)
    with lock, lock:
        assert lock.acquire(blocking=False)
        lock.release()
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(lock.acquire(timeout=5)))
    thread.start()
    thread.join(30)
    assert seen == [True]
