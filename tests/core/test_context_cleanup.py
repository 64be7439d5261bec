"""No stray processes: what a worker starts ends with it, and workers end with their caller.

Every test tracks the exact processes it caused (by pid and start time, so a reused pid is never
mistaken for one of ours) and, if one is still running at the end, stops exactly that one.
Tests that need to see *every* descendant run the caller under a small harness that is a child
subreaper (Linux): whatever the caller leaves behind re-parents to the harness, which lists it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dryml.context as ctx
from dryml.context import FakeCpuProvider, WorkerCrashedError, compute_context

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="process lifetimes are checked through Linux /proc")



@pytest.fixture(autouse=True)
def fake_machine() -> Iterator[None]:
    ctx.configure(providers=[FakeCpuProvider(4)], max_workers=2)
    yield
    ctx.configure()


def _stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[0], fields[19]


class Tracked:
    """Processes this test caused, each known by pid and start time."""

    def __init__(self) -> None:
        self.procs: dict[int, str] = {}

    def add(self, pid: int, start: str | None = None) -> None:
        """Track ``pid``; ``start``: its start time as seen while it ran (else read now)."""
        if start is None:
            stat = _stat(pid)
            if stat is None:
                return
            start = stat[1]
        self.procs[pid] = start

    def running(self) -> list[int]:
        """Tracked processes still running (a zombie has ended: only its exit status is left)."""
        out = []
        for pid, start in self.procs.items():
            stat = _stat(pid)
            if stat is not None and stat[1] == start and stat[0] not in ("Z", "X"):
                out.append(pid)
        return out

    def wait_gone(self, within: float = 15.0) -> list[int]:
        """Poll until none runs or ``within`` seconds pass; returns those still running."""
        deadline = time.monotonic() + within
        while (left := self.running()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return left

    def stop_leftovers(self) -> None:
        for pid in self.running():
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def tracked() -> Iterator[Tracked]:
    procs = Tracked()
    yield procs
    procs.stop_leftovers()


def _wait_for(path: Path, within: float = 120.0) -> str:
    deadline = time.monotonic() + within
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text()


def _start_children(marker: str) -> list[int]:
    """In a worker: start a plain child, one in its own session and a forked multiprocessing
    child; write ``pid start-time`` lines (the worker's first) to ``marker``; return the pids."""
    import multiprocessing

    plain = subprocess.Popen(["sleep", "600"])
    own_session = subprocess.Popen(["sleep", "600"], start_new_session=True)
    forked = multiprocessing.get_context("fork").Process(target=time.sleep, args=(600,))
    forked.start()
    pids = [os.getpid(), plain.pid, own_session.pid, forked.pid or 0]
    lines = [f"{pid} {stat[1]}\n" for pid in pids if (stat := _stat(pid)) is not None]
    Path(marker + ".tmp").write_text("".join(lines))
    os.replace(marker + ".tmp", marker)
    return pids


def _track_marker(tracked: Tracked, text: str) -> list[int]:
    pids = []
    for line in text.splitlines():
        pid, start = line.split()
        tracked.add(int(pid), start)
        pids.append(int(pid))
    return pids


start_children = compute_context({"default": {"cpu/0": 0.5}})(_start_children)


@compute_context({"default": {"cpu/0": 0.5}})
def start_children_and_crash(marker: str, how: str) -> None:
    _start_children(marker)
    if how == "exit":
        os._exit(3)
    elif how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "segfault":
        import ctypes

        ctypes.string_at(0)


@pytest.mark.parametrize(("how", "says"), [
    ("exit", "exited with status 3"), ("sigkill", "SIGKILL"), ("segfault", "SIGSEGV"),
])
def test_a_crashing_worker_takes_its_children_with_it(
        tmp_path: Path, tracked: Tracked, how: str, says: str) -> None:
    marker = tmp_path / "pids"
    with pytest.raises(WorkerCrashedError, match=says):
        start_children_and_crash(str(marker), how)
    _worker, *children = _track_marker(tracked, _wait_for(marker))
    assert len(children) == 3
    assert tracked.wait_gone() == []


def test_a_worker_stopped_by_its_pool_takes_its_children_with_it(
        tmp_path: Path, tracked: Tracked) -> None:
    start_children(str(tmp_path / "pids"))
    assert len(_track_marker(tracked, (tmp_path / "pids").read_text())) == 4
    assert tracked.running() == list(tracked.procs)  # an idle worker keeps its children
    ctx.shutdown_workers()
    assert tracked.wait_gone() == []


def test_a_worker_killed_from_outside_while_idle_takes_its_children_with_it(
        tmp_path: Path, tracked: Tracked) -> None:
    worker, *_ = start_children(str(tmp_path / "pids"))
    _track_marker(tracked, (tmp_path / "pids").read_text())
    os.kill(worker, signal.SIGKILL)  # what the OOM killer does; the caller is not even asked
    assert tracked.wait_gone() == []


HARNESS = textwrap.dedent("""
    # A child subreaper: whatever the caller leaves behind re-parents here and is listed.
    import ctypes, json, os, signal, subprocess, sys, time

    PR_SET_CHILD_SUBREAPER = 36
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("cannot become a child subreaper")
    script, marker, mode, within = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    caller = subprocess.Popen([sys.executable, script, marker])
    if mode == "kill":
        deadline = time.monotonic() + 120
        while not os.path.exists(marker) and caller.poll() is None \\
                and time.monotonic() < deadline:
            time.sleep(0.02)
        caller.kill()
    status = caller.wait(timeout=120)

    def descendants():
        parent_of = {}
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] not in ("Z", "X"):
                parent_of[int(entry)] = int(fields[1])
        mine, found = {os.getpid()}, True
        while found:
            found = False
            for pid, ppid in parent_of.items():
                if ppid in mine and pid not in mine:
                    mine.add(pid)
                    found = True
        mine.discard(os.getpid())
        return sorted(mine)

    deadline = time.monotonic() + within
    while True:
        while True:  # reap what re-parented here and ended
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        left = descendants()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    described = []
    for pid in left:  # exactly the processes found among this harness's own descendants
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                described.append(f.read().replace(b"\\0", b" ").decode(errors="replace"))
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    print(json.dumps({"caller": status, "left": described}))
""")


def _run_under_harness(tmp_path: Path, caller: str, mode: str) -> tuple[dict[str, object], str]:
    (tmp_path / "harness.py").write_text(HARNESS)
    (tmp_path / "caller.py").write_text(textwrap.dedent(caller))
    marker = tmp_path / "marker"
    out = subprocess.run(
        [sys.executable, str(tmp_path / "harness.py"), str(tmp_path / "caller.py"), str(marker),
         mode, "15"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1]), marker.read_text()


CALLER_HOLDING_THE_GIL = """
    import os, sys
    import dryml.context as ctx

    @ctx.compute_context({'default': {}})
    def hold_the_gil(marker):
        import ctypes
        # PyDLL keeps the GIL for the whole call: no Python thread of the worker runs until
        # system() returns. The shell writes the marker only once the worker is inside it.
        command = (f"echo {os.getpid()} $$ > {marker}.tmp && mv {marker}.tmp {marker} && "
                   "exec sleep 600")
        ctypes.PyDLL(None).system(command.encode())

    hold_the_gil(sys.argv[1])
"""


def test_a_caller_killed_while_its_worker_holds_the_gil_leaves_no_process(
        tmp_path: Path, tracked: Tracked) -> None:
    report, marker = _run_under_harness(tmp_path, CALLER_HOLDING_THE_GIL, "kill")
    for pid in map(int, marker.split()):  # the worker and the shell it started
        tracked.add(pid)
    assert report["caller"] == -signal.SIGKILL
    assert report["left"] == []


CALLER_EXITING_NORMALLY = """
    import multiprocessing, os, subprocess, sys, time
    import dryml.context as ctx

    @ctx.compute_context({'default': {}})
    def start_children(marker):
        plain = subprocess.Popen(["sleep", "600"])
        own_session = subprocess.Popen(["sleep", "600"], start_new_session=True)
        forked = multiprocessing.get_context("fork").Process(target=time.sleep, args=(600,))
        forked.start()
        pids = [os.getpid(), plain.pid, own_session.pid, forked.pid]
        with open(marker + ".tmp", "w") as f:
            f.write(" ".join(map(str, pids)))
        os.replace(marker + ".tmp", marker)
        return pids

    print(start_children(sys.argv[1]))
"""


def test_a_caller_that_exits_normally_leaves_no_descendant(
        tmp_path: Path, tracked: Tracked) -> None:
    report, marker = _run_under_harness(tmp_path, CALLER_EXITING_NORMALLY, "exit")
    for pid in map(int, marker.split()):
        tracked.add(pid)
    assert report["caller"] == 0
    assert report["left"] == []
