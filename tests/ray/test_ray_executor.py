"""The ``ray`` executor on a real two-node Ray cluster: placement, fractional GPUs, faults."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import toys
from cluster import LOOPBACK, RayCluster, listening_addresses

import dryml.context as dc
from dryml.errors import ResourcesUnavailableError, WorkerCrashedError


def run_at_once(fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> list[Any]:
    with ThreadPoolExecutor(len(args)) as pool:
        return list(pool.map(lambda a: fn(*a), args))


def test_calls_land_on_both_nodes(cluster: RayCluster, tmp_path: Path) -> None:
    # each node has one CPU and each call takes one: two calls at once need both nodes
    nodes = run_at_once(toys.meet, [(str(tmp_path), 2), (str(tmp_path), 2)])
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(alive) == 2
    assert set(nodes) == alive
    # both nodes registered at the loopback address they were given, not the machine's
    assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {LOOPBACK}


def test_every_server_of_the_cluster_listens_on_loopback_only(cluster: RayCluster,
                                                              tmp_path: Path) -> None:
    run_at_once(toys.meet, [(str(tmp_path), 2), (str(tmp_path), 2)])  # workers up on both nodes
    addresses = listening_addresses()
    assert addresses  # the GCS, the raylets, the object managers, the workers...
    assert addresses <= {LOOPBACK, f"::ffff:{LOOPBACK}"}, addresses


@pytest.mark.parametrize("call", [toys.half_gpu, toys.half_gpu_torch], ids=["default", "torch"])
def test_half_gpu_calls_run_two_per_declared_gpu_and_never_more(
        cluster: RayCluster, tmp_path: Path, call: Callable[..., Any]) -> None:
    folder = tmp_path / "running"
    folder.mkdir()
    # four calls asking {framework: {'num_gpus': 0.5}}; the head node declares two GPUs
    seen = run_at_once(call, [(str(folder), 4)] * 4)
    assert all(s["full"] for s in seen), seen  # four ran at once...
    assert {s["gpu"] for s in seen} == {"0", "1"}, seen  # ...on both declared GPUs
    assert all(s["cuda"] == s["gpu"] for s in seen), seen  # each sees only its GPU
    assert max(s["most_here"] for s in seen) == 2, seen  # two shared a GPU
    assert sorted(s["gpu"] for s in seen) == ["0", "0", "1", "1"], seen  # two per GPU
    assert all(s["most_here"] <= 2 and s["most_total"] <= 4 for s in seen), seen  # never more


def test_update_objs_errors_and_warm_reuse(cluster: RayCluster) -> None:
    counter = toys.Counter(5)
    first = toys.bump(counter)
    assert toys.bump(counter) == first  # the same warm actor serves the next call
    assert counter.count == 7  # the actor's changes came back into the caller's object
    assert [w.pid for w in dc.workers()] == [first]
    with pytest.raises(ValueError, match="fails in its actor") as info:
        toys.fails()
    assert "fails in its actor" in str(info.value.__cause__)  # the remote traceback
    assert toys.bump(counter) == first  # an exception does not cost the actor


def test_nested_call_from_an_actor_runs_in_an_actor_meeting_its_needs(
        cluster: RayCluster) -> None:
    outer_pid, inner = toys.outer()
    assert inner["pid"] != outer_pid and inner["gpus"]


def test_an_actor_killed_mid_call_is_a_worker_crash_and_the_next_call_works(
        cluster: RayCluster, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    errors: list[BaseException] = []

    def call() -> None:
        try:
            toys.hang(str(pid_file))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    for _ in range(6000):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], WorkerCrashedError), errors
    assert "died while running a call" in str(errors[0])
    counter = toys.Counter()
    toys.bump(counter)
    assert counter.count == 1


def test_a_call_past_its_timeout_stops_its_actor(cluster: RayCluster, tmp_path: Path) -> None:
    with pytest.raises(TimeoutError, match="call_timeout"):
        toys.hang(str(tmp_path / "pid"), call_timeout=2)
    counter = toys.Counter()
    toys.bump(counter)
    assert counter.count == 1


@pytest.mark.parametrize("reqs", [{"default": {"num_gpus": 3}}, {"torch": {"num_cpus": 2}},
                                  {"default": {"gpu/0": 0.5, "num_cpus": 2}}])
def test_a_requirement_no_node_can_meet_fails_at_once(cluster: RayCluster,
                                                      reqs: dict[str, Any]) -> None:
    # no resource_timeout: waiting for resources that no node has would hang for ever
    with pytest.raises(ResourcesUnavailableError, match="no node of the Ray cluster"):
        toys.bump(toys.Counter(), call_context_reqs=reqs)


def test_a_large_array_goes_by_reference_once_and_arrives_writable(cluster: RayCluster) -> None:
    import numpy as np

    from dryml.context._executor import chosen_executor, get_executor

    executor = get_executor(*chosen_executor())  # the one the session configured
    puts, hits = executor.store_puts, executor.store_hits
    x = np.arange(300_000, dtype=np.float64)  # 2.4 MB: above the 1 MiB by-reference size
    assert toys.doubled_sum(x) == toys.doubled_sum(x) == float(2 * x.sum())
    assert x[1] == 1.0  # the caller's array is untouched
    assert (executor.store_puts - puts, executor.store_hits - hits) == (1, 1)
    assert toys.doubled_sum(np.ones(10)) == 20.0  # small arrays travel in the message
    assert executor.store_puts - puts == 1


def test_stopping_the_workers_also_stops_a_call_still_waiting_for_room(
        cluster: RayCluster, tmp_path: Path) -> None:
    """Ctrl-C in a search with more trials than the cluster has room for: the calls waiting
    for an actor must fail too, not start once the running ones are killed and run whole."""
    errors: dict[str, BaseException] = {}

    def call(name: str) -> None:
        try:
            toys.hang(str(tmp_path / name))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors[name] = exc

    threads = [threading.Thread(target=call, args=(name,)) for name in ("a", "b", "c")]
    for thread in threads[:2]:  # one CPU per node, one per call: the cluster is full
        thread.start()
    deadline = time.monotonic() + 300
    while not all((tmp_path / n).exists() for n in "ab") and time.monotonic() < deadline:
        time.sleep(0.05)
    threads[2].start()
    time.sleep(2)  # the third call waits for its actor to be placed
    assert not (tmp_path / "c").exists()
    dc.shutdown_workers()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert isinstance(errors["a"], WorkerCrashedError) and isinstance(errors["b"],
                                                                      WorkerCrashedError)
    assert isinstance(errors["c"], ResourcesUnavailableError), errors
    assert "shut down while an actor started" in str(errors["c"])
    assert not (tmp_path / "c").exists() and dc.workers() == []
    deadline = time.monotonic() + 60  # every CPU of the cluster is free again
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2


class _SlowToEncode:
    """An argument whose pickling waits for a signal: its call is still being encoded."""

    def __init__(self) -> None:
        self.encoding, self.go = threading.Event(), threading.Event()

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        self.encoding.set()
        self.go.wait(60)
        return np.ones, (3,)


def test_a_call_still_encoding_when_the_workers_stop_starts_no_executor(
        cluster: RayCluster) -> None:
    """Ctrl-C in a search while a trial still encodes its data: the trial must not make a
    fresh executor (and actor) after the shutdown and run whole."""
    slow, errors, results = _SlowToEncode(), [], []

    def call() -> None:
        try:
            results.append(toys.doubled_sum(slow))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    assert slow.encoding.wait(120)
    dc.shutdown_workers()
    slow.go.set()
    thread.join(120)
    assert not thread.is_alive() and results == []
    assert len(errors) == 1 and isinstance(errors[0], ResourcesUnavailableError), errors
    assert "while this call was being prepared" in str(errors[0])
    assert dc.workers() == []
    assert toys.doubled_sum(np.ones(3)) == 6.0  # a call begun after it starts afresh


def test_a_call_waiting_for_a_gpu_stops_no_idle_actor_that_holds_none(
        cluster: RayCluster, tmp_path: Path) -> None:
    """An idle actor is stopped only when another call waits for what it holds: a call
    waiting for a GPU (held by a busy actor) stopped every idle actor, GPU or not."""
    from dryml.context._ray import EVICT_AFTER

    warm = toys.pid()  # idle now, holding a quarter of a CPU and no GPU
    errors: list[BaseException] = []

    def call(fn: Callable[..., Any], *args: Any) -> threading.Thread:
        def run() -> None:
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    holder = call(toys.hold_gpus, str(tmp_path))  # busy, holding both of the head's GPUs
    deadline = time.monotonic() + 300
    while not (tmp_path / "running").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    waiter = call(toys.one_gpu)  # waits for a GPU
    time.sleep(EVICT_AFTER + 3)  # past the moment the old code stopped every idle actor
    still = {w.pid for w in dc.workers() if not w.busy}
    (tmp_path / "go").touch()
    holder.join(300)
    waiter.join(300)
    assert not errors, errors
    assert warm in still, (warm, dc.workers())  # the CPU-only idle actor was left alone...
    assert toys.pid() == warm  # ...and still serves its context
