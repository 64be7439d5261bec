"""The locks dryml holds while saving, loading and indexing, across fork()."""

from __future__ import annotations

import inspect
import multiprocessing
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from forking import run_forked

from dryml import Object, load_object, save_object
from dryml._forksafe import ForkSafeLock
from dryml.repo import _lazy

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
def test_a_lock_the_forking_thread_holds_is_free_in_the_child_and_its_release_absorbed(
        reentrant: bool) -> None:
    lock = ForkSafeLock(reentrant=reentrant)

    def child() -> None:
        taken: list[bool] = []  # another thread of the child is not kept out ...

        def take() -> None:
            taken.append(lock.acquire(timeout=5))
            lock.release()

        thread = threading.Thread(target=take)
        thread.start()
        thread.join()
        assert taken == [True]
        lock.release()  # ... the child leaves the block it forked in, without an error ...
        assert lock.acquire(timeout=5)  # ... and the lock works as before
        lock.release()
        with pytest.raises(RuntimeError):
            lock.release()  # one release too many is still an error

    with lock:
        assert run_forked(child) == 0
    assert lock.acquire(blocking=False)
    lock.release()


def _take_from_a_thread(lock: ForkSafeLock, results: Any) -> None:
    taken: list[bool] = []
    thread = threading.Thread(target=lambda: taken.append(lock.acquire(timeout=5)))
    thread.start()
    thread.join(10)
    results.put(taken == [True])


@pytest.mark.parametrize("reentrant", [False, True])
def test_a_multiprocessing_child_of_a_lock_holder_can_take_the_lock_in_a_thread(
        reentrant: bool) -> None:
    # A multiprocessing child forked inside the block runs its target and exits: it never
    # returns to release the lock, so a lock kept held there would block its threads for good.
    lock = ForkSafeLock(reentrant=reentrant)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    with lock:
        process = context.Process(target=_take_from_a_thread, args=(lock, results))
        process.start()
    try:
        assert results.get(timeout=30) is True
    finally:
        process.join(30)


def test_a_refused_release_changes_nothing() -> None:
    lock = ForkSafeLock(reentrant=True)
    errors: list[RuntimeError] = []

    def release_it() -> None:
        try:
            lock.release()
        except RuntimeError as exc:
            errors.append(exc)

    with lock:
        thread = threading.Thread(target=release_it)
        thread.start()
        thread.join()
        assert len(errors) == 1  # not this thread's lock ...
        assert run_forked(lock.release) == 0  # ... and the holder's child can still leave


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


class Model(Object):
    def __init__(self, x: int) -> None:
        self.x = x

    def save_object_imp(self, store: Any) -> None:
        store.put("weights", [1.0, 2.0])

    def load_object_imp(self, store: Any) -> None:
        self.weights = store.get("weights")

    @property
    def trained(self) -> bool:  # like a Trainable's: a default when the state is missing
        return self.__dict__.get("weights") is not None


def _swap_lines() -> list[int]:
    """The lines of ``load_now`` from building the loaded state to returning it."""
    source, first = inspect.getsourcelines(_lazy.load_now)
    start = next(i for i, line in enumerate(source) if "swapped = dict(" in line)
    end = next(i for i, line in enumerate(source) if "return obj  # type" in line and i > start)
    return [first + i for i in range(start, end + 1) if source[i].strip()
            and not source[i].strip().startswith("#")]


@pytest.mark.parametrize("step", range(len(_swap_lines())))
def test_a_child_forked_in_the_middle_of_a_lazy_load_gets_a_whole_object(
        tmp_path: Path, step: int) -> None:
    path = tmp_path / "m.dry"
    save_object(Model(7), path)
    lazy = _lazy.make_lazy(Model, _lazy.LazyState(
        "unused", str(path), f"{Model.__module__}:Model", ()))
    object.__getattribute__(lazy, "__dict__")[_lazy._STATE].dry_id = load_object(path).dry_id
    stop = _swap_lines()[step]
    paused, resume = threading.Event(), threading.Event()

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is not _lazy.load_now.__code__:
            return None

        def on_line(frame: Any, event: str, arg: Any) -> Any:
            if event == "line" and frame.f_lineno == stop:
                paused.set()
                resume.wait(30)
            return on_line
        return on_line

    def load() -> None:
        sys.settrace(tracer)
        try:
            _lazy.load_now(lazy)
        finally:
            sys.settrace(None)

    loader = threading.Thread(target=load)
    loader.start()
    assert paused.wait(30)

    def child() -> None:  # another thread of the parent is stopped inside load_now
        assert lazy.x == 7 and lazy.trained
        assert _lazy.load_now(lazy) is lazy and _lazy.is_loaded(lazy)
        assert type(lazy) is Model and lazy.weights == [1.0, 2.0]

    try:
        assert run_forked(child) == 0
    finally:
        resume.set()
        loader.join(30)
    assert type(lazy) is Model and lazy.x == 7 and lazy.trained and _lazy.is_loaded(lazy)
