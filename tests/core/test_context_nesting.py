"""Nested calls (a call made inside a worker) never wait on the workers waiting for them, and
stay within the time their caller's call has left. Real worker processes throughout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import dryml.context as ctx
from dryml.context import Resource, ResourcesUnavailableError, compute_context


class TwoCpus:
    def resources(self) -> list[Resource]:
        return [Resource("cpu", 0), Resource("cpu", 1)]


@pytest.fixture(autouse=True)
def two_worker_machine() -> Iterator[None]:
    ctx.configure(providers=[TwoCpus()], max_workers=2)
    yield
    ctx.configure()


@compute_context({"default": {"cpu/0": 0.25}})
def inner() -> str:
    return "inner ran"


@compute_context({"default": {"cpu/1": 0.25}})
def middle() -> str:
    return inner()


@compute_context({"default": {"cpu/0": 0.5}})
def outer() -> str:
    return middle()


def test_two_levels_of_nesting_in_a_two_worker_pool_complete() -> None:
    """Found by review: outer and middle filled the pool's two slots while they waited, and
    inner waited for a slot forever (call_timeout did not help)."""
    assert outer(call_timeout=120) == "inner ran"
    assert len(ctx.workers()) == 3  # the nested call went past the cap, its callers waited


def test_nested_calls_from_two_threads_complete() -> None:
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(middle(call_timeout=120)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    assert results == ["inner ran", "inner ran"]


@compute_context({"default": {"cpu/0": 0.75}})
def needs_most_of_cpu0() -> None:
    pass


@compute_context({"default": {"cpu/1": 0.25}})
def middle_asks_for_cpu0() -> None:
    needs_most_of_cpu0()


@compute_context({"default": {"cpu/0": 0.5}})
def top_holds_half_of_cpu0() -> None:
    middle_asks_for_cpu0()


def test_a_nested_call_needing_what_a_caller_two_levels_up_holds_fails_at_once() -> None:
    with pytest.raises(ResourcesUnavailableError, match="calling contexts hold"):
        top_holds_half_of_cpu0(call_timeout=120)


@compute_context({"default": {"cpu/1": 0.25}})
def sleeps(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


@compute_context({"default": {"cpu/0": 0.25}})
def waits_on_a_sleeper(seconds: float) -> str:
    return sleeps(seconds)


def test_the_callers_call_timeout_bounds_its_nested_calls() -> None:
    """Found by review: a 2 s call_timeout fired only after the 15 s nested call ended."""
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="call_timeout"):
        waits_on_a_sleeper(300, call_timeout=2)
    assert time.monotonic() - started < 150  # not the nested call's 300 s


def test_a_nested_call_within_the_callers_time_is_untouched() -> None:
    assert waits_on_a_sleeper(0.1, call_timeout=120) == "slept"


@compute_context({"default": {"cpu/0": 0.3, "cpu/1": 0.5}})
def nested_call() -> str:
    return "nested ran"


@compute_context({"default": {"cpu/0": 0.6}})
def holds_and_nests(cpu: int) -> str:
    time.sleep(0.5)  # both callers hold their share before either nests
    other = 1 - cpu
    return nested_call(call_context_reqs={"default": {f"cpu/{cpu}": 0.3,
                                                      f"cpu/{other}": 0.5}})


def test_nested_calls_of_two_threads_that_wait_on_each_other_fail_one_and_finish_the_other(
        ) -> None:
    """Each thread's caller held 0.6 of one CPU and its nested call needed 0.5 of the other
    one, which the other thread's caller held: each fits beside its own callers, not beside
    both, and the two waited on each other forever with no error (found by review). One now
    fails at once saying why; the other completes once it has."""
    results: dict[int, str] = {}

    def run(cpu: int) -> None:
        try:
            results[cpu] = holds_and_nests(cpu, call_context_reqs={"default": {f"cpu/{cpu}":
                                                                              0.6}})
        except ResourcesUnavailableError as exc:
            results[cpu] = f"refused: {exc}"

    threads = [threading.Thread(target=run, args=(cpu,), daemon=True) for cpu in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "the two threads hung"
    outcomes = sorted(results.values())
    assert outcomes[0] == "nested ran", outcomes
    assert outcomes[1].startswith("refused: this nested call would wait forever"), outcomes


def test_a_nested_call_that_can_go_on_once_another_does_is_not_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadlock check refused a nested call whose needs another waiting nested call's
    caller would free once that call ran, which an ordinary call's end lets it do (found by
    review). It refuses only when no waiting nested call can ever go on."""
    from dryml.context import _pool
    from dryml.context._resources import normalize_requirement as req
    from dryml.context._scheduler import Scheduler

    class Machine:
        def resources(self) -> list[Resource]:
            return [Resource("cpu", i) for i in range(3)] + [Resource("gpu", 0, {"fake": True})]

    monkeypatch.setenv("DRYML_LEDGER", "process")
    scheduler = Scheduler([Machine()])
    pool = _pool.Pool(scheduler, max_workers=4)
    try:
        a_caller = scheduler.try_acquire(req({"default": {"cpu/0": 1.0}}))
        b_caller = scheduler.try_acquire(req({"default": {"cpu/1": 1.0}}))
        ordinary = scheduler.try_acquire(req({"default": {"gpu/0": 1.0, "cpu/2": 1.0}}))
        assert a_caller and b_caller and ordinary
        a_needs = req({"default": {"gpu/0": 1.0, "cpu/2": 0.5}})  # once `ordinary` ends
        b_needs = req({"default": {"cpu/0": 0.5}})  # once A's call ran and its caller ended
        with pool.cond:
            pool._nested_waits[object()] = ((a_caller,), a_needs)
            pool._never_frees(a_needs)
            pool._nested_waits[object()] = ((b_caller,), b_needs)
            pool._never_frees(b_needs)  # no error: A can go on
            # each needs what only the other's caller holds: neither can ever go on
            pool._nested_waits.clear()
            pool._nested_waits[object()] = ((a_caller,), req({"default": {"cpu/1": 0.5}}))
            pool._nested_waits[object()] = ((b_caller,), b_needs)
            with pytest.raises(ResourcesUnavailableError, match="would wait forever"):
                pool._never_frees(b_needs)
    finally:
        pool.shutdown()


@compute_context({"default": {"cpu/1": 0.5}})
def calls_a_sleeper_with_its_own_timeout() -> str:
    return sleeps(30, call_timeout=1)  # this context satisfies sleeps': it runs inline


def test_a_nested_call_that_runs_inline_is_bounded_by_its_callers_call_timeout() -> None:
    """An inline nested call's own call_timeout cannot stop it (documented); its caller's
    does. (Forwarding it instead needed resources of its own: a caller holding all of them
    failed where the call had run inline.)"""
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="call_timeout=2s"):
        calls_a_sleeper_with_its_own_timeout(call_timeout=2)
    assert time.monotonic() - start < 20


@compute_context({"default": {"cpu/1": 0.5}})
def echo_pid() -> int:
    import os

    return os.getpid()


@compute_context({"default": {"cpu/1": 0.5}})
def nests_inline() -> tuple[int, int]:
    import os

    return os.getpid(), echo_pid()


def test_a_nested_call_without_a_call_timeout_still_runs_inline() -> None:
    me, nested = nests_inline()
    assert me == nested


_LEFT_RUNNING: list[threading.Thread] = []
_OUTCOMES: list[str] = []


def _nests_later() -> None:
    time.sleep(1)  # after the call that started this thread has returned
    try:
        _OUTCOMES.append(inner())
    except Exception as exc:  # noqa: BLE001 - what the thread saw is the test's result
        _OUTCOMES.append(f"{type(exc).__name__}: {exc}")


@compute_context({"default": {"cpu/1": 0.5}})
def leaves_a_thread_running() -> int:
    import os

    thread = threading.Thread(target=_nests_later, daemon=True)
    thread.start()
    _LEFT_RUNNING.append(thread)
    return os.getpid()


@compute_context({"default": {"cpu/1": 0.5}})
def what_the_thread_saw() -> tuple[int, list[str]]:
    import os

    for thread in _LEFT_RUNNING:
        thread.join(30)
    return os.getpid(), list(_OUTCOMES)


def test_a_nested_call_from_a_thread_a_call_left_running_fails_and_the_worker_goes_on() -> None:
    """Made while the worker waited for its next call, such a nested call read and wrote the
    pipe that the worker's own loop used, and corrupted it (now and then)."""
    worker = leaves_a_thread_running()
    time.sleep(3)  # the thread makes its nested call while no call runs
    served_by, outcomes = what_the_thread_saw(call_timeout=60)
    assert served_by == worker  # the worker goes on serving calls
    assert len(outcomes) == 1
    assert outcomes[0].startswith("DrymlError: a nested call was made while no call runs in "
                                  "this worker"), outcomes
    assert "join the threads that make them before the call returns" in outcomes[0]
