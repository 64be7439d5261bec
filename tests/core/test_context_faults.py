"""Workers that crash, hang or lose their caller: the caller hears at once, nothing leaks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dryml.context as ctx
import dryml.errors
from dryml.context import (
    FakeCpuProvider,
    FakeGpuProvider,
    WorkerCrashedError,
    compute_context,
)


@pytest.fixture(autouse=True)
def fake_machine() -> Iterator[None]:
    ctx.configure(providers=[FakeCpuProvider(4), FakeGpuProvider(1)], max_workers=3)
    yield
    ctx.configure()


GPU = {"default": {"gpu/0": 1.0, "cpu/0": 0.5}}


@compute_context(GPU)
def pid() -> int:
    return os.getpid()


@compute_context(GPU)
def die(how: str) -> None:
    if how == "segfault":
        import ctypes

        ctypes.string_at(0)
    elif how == "exit":
        os._exit(3)
    elif how == "sys.exit":
        sys.exit(4)
    elif how == "sigkill":  # what the OOM killer does
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "hang":
        time.sleep(120)


def gone(worker_pid: int, within: float = 10.0) -> bool:
    """True once ``worker_pid`` no longer runs (a zombie counts as gone)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{worker_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(("how", "says"), [
    ("segfault", "SIGSEGV"), ("exit", "exited with status 3"), ("sigkill", "SIGKILL"),
    ("sys.exit", "exited with status 4"),
])
def test_a_dying_worker_raises_and_is_replaced(how: str, says: str) -> None:
    before = pid()
    with pytest.raises(WorkerCrashedError, match=says):
        die(how)
    assert gone(before)
    assert before not in [w.pid for w in ctx.workers()]
    after = pid()  # needs the whole GPU again: the dead worker's grant was released
    assert after != before


def test_call_timeout_stops_the_worker_and_raises_timeout_error() -> None:
    before = pid()
    with pytest.raises(TimeoutError, match="call_timeout=0.5"):
        die("hang", call_timeout=0.5)
    assert gone(before)
    assert pid() != before


def test_a_failing_worker_preparation_is_reported() -> None:
    with pytest.raises(dryml.errors.BackendUnavailableError, match="nosuchframework"):
        pid(call_context_reqs={"nosuchframework": {}})


CALLER = textwrap.dedent("""
    import os, sys, time
    import dryml.context as ctx

    @ctx.compute_context({'default': {'cpu/0': 0.5}})
    def idle_pid():
        return os.getpid()

    @ctx.compute_context({'default': {'cpu/0': 0.25}})
    def busy(path):
        import subprocess
        child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
        with open(path, 'w') as f:
            f.write(f"{os.getpid()} {child.pid}")
        time.sleep(120)

    print(idle_pid(), flush=True)
    busy(sys.argv[1])
""")


def _start_caller(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int]]:
    script = tmp_path / "caller.py"
    script.write_text(CALLER)
    marker = tmp_path / "busy_pid"
    proc = subprocess.Popen([sys.executable, str(script), str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    idle = int(proc.stdout.readline())
    deadline = time.monotonic() + 60
    while not (marker.exists() and len(marker.read_text().split()) == 2) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc, [idle, *map(int, marker.read_text().split())]


def test_ctrl_c_in_the_caller_stops_its_workers_and_their_children(tmp_path: Path) -> None:
    proc, workers = _start_caller(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert "KeyboardInterrupt" in err
    assert all(gone(w) for w in workers)


def test_no_worker_nor_its_child_outlives_a_killed_caller(tmp_path: Path) -> None:
    proc, workers = _start_caller(tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    assert all(gone(w) for w in workers)


def test_an_interrupted_call_never_leaves_its_worker_to_answer_the_next(tmp_path: Path) -> None:
    import threading

    before = pid()
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))  # Ctrl-C mid-call
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            die("hang")
    finally:
        timer.cancel()
    assert gone(before)
    assert pid() != before


def test_a_worker_killed_while_idle_is_replaced_without_bothering_the_next_call() -> None:
    before = pid()
    os.kill(before, signal.SIGKILL)
    assert gone(before)
    assert pid() != before


def test_a_worker_killed_while_idle_gives_back_its_grant_at_once() -> None:
    """An idle worker killed from outside (the OOM killer) kept its grant, a whole fake GPU
    here, until its idle timeout (300 s) or the next call's look (found by review: another
    program waited for that GPU meanwhile). It is let go within seconds now."""
    before = pid()
    os.kill(before, signal.SIGKILL)
    assert gone(before)
    from dryml.context._pool import DEATH_CHECK

    deadline = time.monotonic() + 3 * DEATH_CHECK + 5
    # the pool lets the worker go, then ends its keeper and gives the grant back (once the
    # processes are gone, so that their GPU memory is free): both within seconds
    while (ctx.workers() or ctx.resources()["gpu/0"] != 1.0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ctx.workers() == []
    assert ctx.resources()["gpu/0"] == 1.0  # free again


FORKER = textwrap.dedent("""
    import os, sys
    import dryml.context as ctx

    @ctx.compute_context()
    def pid():
        return os.getpid()

    first = pid()
    child = os.fork()
    if child == 0:  # its own (empty) pool; exiting normally runs atexit
        sys.exit(0 if ctx.workers() == [] else 1)
    _, status = os.waitpid(child, 0)
    print(os.waitstatus_to_exitcode(status), pid() == first)
""")


def test_a_forked_child_neither_uses_nor_stops_its_parents_workers(tmp_path: Path) -> None:
    script = tmp_path / "forker.py"
    script.write_text(FORKER)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["0", "True"], out.stderr


class GhostContext:
    """A context plugin whose framework is not installed."""

    def environment(self, context: Any) -> dict[str, str]:
        return {}

    def prepare(self, context: Any) -> None:
        import no_such_framework_xyz  # type: ignore[import-not-found]  # noqa: F401


GHOST = GhostContext()


def test_a_backend_whose_framework_is_missing_says_so() -> None:
    from dryml.plugins import get_plugin_manager
    from dryml.records import ContextRecord

    class Plugin:
        @dryml.hookimpl
        def dryml_contexts(self) -> list[ContextRecord]:
            return [ContextRecord("ghost", impl=f"{__name__}:GHOST", package="dryml-ghost")]

    manager = get_plugin_manager()
    manager.register(Plugin(), "ghost-plugin")
    try:
        @compute_context({"ghost": {}})
        def call() -> None:
            pass

        with pytest.raises(dryml.errors.BackendUnavailableError,
                           match="could not be prepared(.|\n)*no_such_framework_xyz"):
            call()
    finally:
        manager.unregister("ghost-plugin")


def _in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, list[BaseException]]:
    """Start ``fn(*args)`` in a thread (a search's trial); what it raises lands in the list."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def _open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts descriptors in /proc")
def test_stopping_workers_while_a_call_waits_fails_the_call_and_closes_each_descriptor_once(
        ) -> None:
    """What a search's Ctrl-C does: the main thread stops the workers while a trial waits on
    one. The trial hears its worker died; the stop raises nothing (the two threads closed the
    same descriptors, and a number closed twice may already name another file)."""
    for _ in range(6):
        pid()  # a warm worker, so that only the call's own descriptors change below
        before = _open_fds()
        thread, errors = _in_thread(die, "hang")
        deadline = time.monotonic() + 30
        while not any(w.busy for w in ctx.workers()) and time.monotonic() < deadline:
            time.sleep(0.01)
        ctx.shutdown_workers()
        thread.join(30)
        assert not thread.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], WorkerCrashedError), errors
        # found by review: it said "killed by SIGKILL (the OOM killer, or someone...)"
        assert "was stopped by this process, which shut its workers down" in str(errors[0])
        assert _open_fds() <= before  # the worker's own descriptors are all closed


def test_a_worker_stopped_between_its_checkout_and_the_call_fails_the_call_cleanly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers are shut down after a call took its worker but before it sent anything:
    the call must not write to the closed descriptors (their numbers may name other files by
    then); it fails as a call whose worker died does."""
    from dryml.context import _handle

    pid()  # a warm worker
    checked_out, shut = threading.Event(), threading.Event()
    real_call = _handle.WorkerHandle.call

    def call_after_shutdown(self: Any, *args: Any, **kwargs: Any) -> Any:
        checked_out.set()
        shut.wait(30)  # the window, widened: the pool is shut down right here
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(_handle.WorkerHandle, "call", call_after_shutdown)
    thread, errors = _in_thread(pid)
    assert checked_out.wait(30)
    before = _open_fds()
    ctx.shutdown_workers()
    pipes = [os.pipe() for _ in range(8)]  # files opened meanwhile take the freed numbers
    shut.set()
    thread.join(30)
    written = []
    for read_end, write_end in pipes:
        os.set_blocking(read_end, False)
        with contextlib.suppress(BlockingIOError):
            written.append(os.read(read_end, 1 << 16))
        os.close(read_end)
        os.close(write_end)
    assert written == []  # the call went into none of them
    assert len(errors) == 1 and isinstance(errors[0], WorkerCrashedError), errors
    assert "stopped before the call reached it" in str(errors[0])
    assert _open_fds() < before


def test_workers_shut_down_while_one_starts_for_a_call_stop_it_and_fail_the_call() -> None:
    """Ctrl-C in a search stops the workers while a trial's worker is still starting: that
    worker must neither run the trial to its end nor live on outside every pool."""
    from dryml.context import _runtime

    ctx.shutdown_workers()  # no warm worker: the call below starts one
    thread, errors = _in_thread(die, "hang")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
            _runtime._pool is not None and _runtime._pool._starting > 0):
        time.sleep(0.001)
    started = time.monotonic()
    ctx.shutdown_workers()
    thread.join(60)
    assert not thread.is_alive() and time.monotonic() - started < 30  # not the 120 s call
    assert len(errors) == 1 and isinstance(errors[0], dryml.errors.ResourcesUnavailableError)
    assert "shut down while a worker started" in str(errors[0])
    assert ctx.workers() == []
    assert all(gone(child) for child in _children())  # no keeper (with its worker) runs on


def _children() -> list[int]:
    """This process's child processes, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.append(int(stat.parent.name))
    return found


class _SlowToEncode:
    """An argument whose pickling waits for a signal: its call is still being encoded."""

    def __init__(self) -> None:
        self.encoding, self.go = threading.Event(), threading.Event()

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        self.encoding.set()
        self.go.wait(30)
        return int, (7,)


@compute_context(GPU)
def echo(value: Any) -> Any:
    return value


def test_a_call_still_encoding_its_arguments_when_the_workers_shut_down_does_not_run() -> None:
    """A search's Ctrl-C stops the workers while a trial still encodes its data: that trial
    must not start a fresh pool, run to its end and leave a worker behind."""
    ctx.shutdown_workers()
    slow = _SlowToEncode()
    thread, errors = _in_thread(echo, slow)
    assert slow.encoding.wait(30)
    ctx.shutdown_workers()
    slow.go.set()
    thread.join(60)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], dryml.errors.ResourcesUnavailableError)
    assert "shut down (shutdown_workers) while this call was being prepared" in str(errors[0])
    assert ctx.workers() == []
    assert all(gone(child) for child in _children())
    assert echo(5) == 5  # a call begun after the shutdown starts fresh workers
    assert len(ctx.workers()) == 1


CTRL_C_WHILE_MAKING_ROOM = """
import os, signal, threading, time
import dryml.context as dc
from dryml.context import Resource

class TwoCpus:
    def resources(self):
        return [Resource("cpu", 0), Resource("cpu", 1)]

dc.configure(providers=[TwoCpus()], max_workers=1)

@dc.compute_context({"default": {"num_cpus": 1}})
def first():
    import atexit
    atexit.register(time.sleep, 3)  # this worker takes seconds to exit when it is stopped
    return os.getpid()

@dc.compute_context({"default": {"cpu/1": 0.5}})
def second():
    return os.getpid()

@dc.compute_context({"default": {"num_cpus": 2}})
def both():
    return "got both CPUs"

first()
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()  # Ctrl-C
try:
    second()  # stops first's worker to make room: interrupted there
except KeyboardInterrupt:
    print("interrupted")
print(both(call_resource_timeout=20))
dc.shutdown_workers()
"""


def test_ctrl_c_while_the_pool_stops_a_worker_releases_what_it_held(tmp_path: Path) -> None:
    """Found by review: the stopped worker's grant stayed claimed with no worker holding it,
    so a later call for both CPUs waited until its timeout."""
    env = {**os.environ, "DRYML_LEDGER_DIR": str(tmp_path / "ledger")}
    done = subprocess.run([sys.executable, "-c", CTRL_C_WHILE_MAKING_ROOM], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["interrupted", "got both CPUs"]


@compute_context(GPU)
def returns_a_lock() -> Any:
    return threading.Lock()


@compute_context(GPU)
def takes(value: Any, *, other: Any = None) -> int:
    return os.getpid()


def test_values_that_cannot_cross_to_or_from_a_worker_are_serialization_errors() -> None:
    """A result that could not be pickled came back as a bare TypeError, read as the
    function's own error although it had run; an argument that could not be was a TypeError
    naming no argument (found by review). Both are SerializationErrors that say what and
    where; the worker goes on serving calls."""
    with pytest.raises(dryml.errors.SerializationError,
                       match=r"the call ran in the worker, but its result \(_thread.lock\) "
                             "cannot be sent back to the caller"):
        returns_a_lock()
    with pytest.raises(dryml.errors.SerializationError,
                       match="argument 'other' cannot be sent to the worker") as caught:
        takes(1, other=(x for x in range(3)))
    assert "the call ran" not in str(caught.value)
    assert isinstance(takes(1), int)


class BrokenBeforeCall:
    """A context plugin whose ``before_call`` raises."""

    def environment(self, context: Any) -> dict[str, str]:
        return {}

    def prepare(self, context: Any) -> None:
        pass

    def before_call(self, context: Any) -> None:
        raise RuntimeError("cannot set the thread count again")


BROKEN = BrokenBeforeCall()


def test_a_failing_before_call_hook_is_reported_once_and_the_calls_run(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin's before_call that raises was swallowed without a word; now its worker warns
    once, in the stderr that reaches the caller, and every call still runs, also where
    warnings are errors (PYTHONWARNINGS=error crashed the worker, found by review)."""
    monkeypatch.setenv("PYTHONWARNINGS", "error")
    from dryml.plugins import get_plugin_manager
    from dryml.records import ContextRecord

    class Plugin:
        @dryml.hookimpl
        def dryml_contexts(self) -> list[ContextRecord]:
            return [ContextRecord("brokenhook", impl=f"{__name__}:BROKEN",
                                  package="dryml-brokenhook")]

    manager = get_plugin_manager()
    manager.register(Plugin(), "brokenhook-plugin")
    try:
        @compute_context({"brokenhook": {}})
        def worker_pid() -> int:
            return os.getpid()

        first, second = worker_pid(), worker_pid()
        assert first == second != os.getpid()  # both ran, in one warm worker
        ctx.shutdown_workers()  # its stderr is read to the end
        err = capfd.readouterr().err
        assert err.count("BrokenBeforeCall.before_call failed (RuntimeError: cannot set the "
                         "thread count again)") == 1, err
    finally:
        manager.unregister("brokenhook-plugin")


class HangingPreparation:
    """A context whose ``prepare`` hangs (a GPU driver that never answers)."""

    def environment(self, ctx: Any) -> dict[str, str]:
        return {}

    def prepare(self, ctx: Any) -> None:
        time.sleep(30)


HANGING = HangingPreparation()


class SlowPreparation(HangingPreparation):
    """A context whose ``prepare`` takes longer than a short call (a framework's import)."""

    def prepare(self, ctx: Any) -> None:
        time.sleep(2)


SLOW = SlowPreparation()


def test_a_call_timeout_shorter_than_a_workers_start_up_still_runs_and_warms_it() -> None:
    """Start-up counted against call_timeout: with a timeout shorter than the framework's
    import, every call started a worker, killed it and failed."""
    from dryml.plugins import get_plugin_manager
    from dryml.records import ContextRecord

    class Plugin:
        @dryml.hookimpl
        def dryml_contexts(self) -> list[ContextRecord]:
            return [ContextRecord("slow", impl=f"{__name__}:SLOW", package="dryml-slow")]

    manager = get_plugin_manager()
    manager.register(Plugin(), "slow-plugin")
    try:
        @compute_context({"slow": {"cpu/2": 0.5}})
        def pid() -> int:
            import os

            return os.getpid()

        first = pid(call_timeout=0.5)
        assert pid(call_timeout=0.5) == first  # the warm worker, not a new one each time
    finally:
        ctx.shutdown_workers()
        manager.unregister("slow-plugin")


def test_call_timeout_bounds_a_worker_that_hangs_while_starting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """call_timeout covered only the call: a worker whose preparation hung kept its caller
    waiting (forever, for a preparation that never returns). Start-up is bounded by the
    longer of STARTUP_TIMEOUT (lowered here) and the call_timeout."""
    from dryml.context import _runtime
    from dryml.plugins import get_plugin_manager
    from dryml.records import ContextRecord

    monkeypatch.setattr(_runtime, "STARTUP_TIMEOUT", 2.0)

    class Plugin:
        @dryml.hookimpl
        def dryml_contexts(self) -> list[ContextRecord]:
            return [ContextRecord("hanging", impl=f"{__name__}:HANGING",
                                  package="dryml-hanging")]

    manager = get_plugin_manager()
    manager.register(Plugin(), "hanging-plugin")
    try:
        free = ctx.resources()

        @compute_context({"hanging": {"cpu/2": 0.5}})
        def never_runs() -> str:
            return "ran"

        with pytest.raises(TimeoutError, match="took longer than 2s to start"):
            never_runs(call_timeout=1)
        assert ctx.workers() == []  # stopped, and its grant given back
        assert ctx.resources() == free
        assert all(gone(child) for child in _children())  # no keeper (with its worker) runs on
    finally:
        manager.unregister("hanging-plugin")
