"""The machine-wide ledger: two independent processes never hold more than 1.0 of one GPU.

Each test runs real separate Python processes that declare the same pretend GPU (a fake whose
``info`` asks for the ledger) and ask for 0.7 of it; the ledger lives in a directory of the
test's own (``DRYML_LEDGER_DIR``) so that nothing else on the machine shares it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

HOLDER = textwrap.dedent("""
    import json, os, sys
    from dryml.context import CpuProvider, Resource, compute_context, configure
    from dryml.errors import ResourcesUnavailableError

    class SharedGpu:
        def resources(self):
            return [Resource("gpu", 0, {"uuid": sys.argv[1], "model": "Fake GPU",
                                        "memory_total": 1 << 30, "fake": True,
                                        "ledger": True})]

    configure(providers=[CpuProvider(), SharedGpu()])

    @compute_context()
    def use():
        return os.getpid()

    # what to ask for: 0.7 of gpu/0 unless HOLDER_REQS says otherwise (JSON)
    reqs = json.loads(os.environ.get("HOLDER_REQS") or '{"default": {"gpu/0": 0.7}}')
    print("ready", flush=True)
    for line in sys.stdin:  # "try SECONDS": ask for reqs, waiting that long at most
        try:
            print("granted", use(call_context_reqs=reqs,
                                 call_resource_timeout=float(line.split()[1])), flush=True)
        except ResourcesUnavailableError as exc:
            print("unavailable", " ".join(str(exc).split()), flush=True)
""")


class Holder:
    """A separate Python process that asks for 0.7 of the shared GPU (or ``reqs``) when told
    to."""

    def __init__(self, script: Path, gpu: str, env: dict[str, str],
                 reqs: dict[str, dict[str, float]] | None = None) -> None:
        env = {**env, "HOLDER_REQS": json.dumps(reqs)} if reqs else env
        self.proc = subprocess.Popen([sys.executable, str(script), gpu], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.read() == "ready"

    def ask(self, timeout: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"try {timeout}\n")
        self.proc.stdin.flush()

    def read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def answered_within(self, seconds: float) -> bool:
        assert self.proc.stdout is not None
        return bool(select.select([self.proc.stdout], [], [], seconds)[0])

    def request(self, timeout: float) -> str:
        self.ask(timeout)
        return self.read()

    def sigkill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait() == -signal.SIGKILL

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    gpu = f"GPU-ledger-test-{uuid.uuid4()}"
    env = {**os.environ, "DRYML_LEDGER_DIR": str(tmp_path / "ledger")}
    env.pop("DRYML_LEDGER", None)
    started: list[Holder] = []

    def make(reqs: dict[str, dict[str, float]] | None = None, **extra: str) -> Holder:
        holder = Holder(script, gpu, {**env, **extra}, reqs)
        started.append(holder)
        return holder

    make.env = env  # type: ignore[attr-defined]
    yield make
    for holder in started:
        holder.close()


def cli_resources(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-m", "dryml.cli", "resources"], env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout


def test_a_second_process_waits_or_fails_naming_the_first_until_it_is_killed(start) -> None:
    first, second = start(), start()
    assert first.request(30).startswith("granted")
    answer = second.request(1)
    assert answer.startswith("unavailable"), answer
    assert "0.7 of gpu/0 (GPU-ledger-test-" in answer
    assert f"held by pid {first.proc.pid} (" in answer and "holder.py" in answer
    listing = cli_resources(start.env)
    assert f"{first.proc.pid}" in listing and "gpu/0" in listing and "0.7" in listing
    assert "holder.py" in listing

    second.ask(120)  # waits for the first process's grant...
    assert not second.answered_within(1.0)
    first.sigkill()  # ...which ends with it, SIGKILL included
    answer = second.read()
    assert answer.startswith("granted"), answer
    listing = cli_resources(start.env)
    assert f"{first.proc.pid}" not in listing and f"{second.proc.pid}" in listing
    assert start().request(1).startswith("unavailable")  # and the second one now holds it


def test_per_process_accounting_when_asked(start) -> None:
    first, second = start(DRYML_LEDGER="process"), start(DRYML_LEDGER="process")
    assert first.request(30).startswith("granted")
    assert second.request(30).startswith("granted")  # each counts only its own workers
    assert "ledger is off" in cli_resources({**start.env, "DRYML_LEDGER": "process"})


def test_dryml_resources_with_no_grants(tmp_path: Path) -> None:
    env = {**os.environ, "DRYML_LEDGER_DIR": str(tmp_path / "none")}
    env.pop("DRYML_LEDGER", None)
    assert "no grants" in cli_resources(env)


def test_an_unusable_ledger_says_what_to_do(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from dryml.context import CpuProvider, Resource, ResourcesUnavailableError
    from dryml.context._resources import normalize_requirement
    from dryml.context._scheduler import Scheduler

    class SharedGpu:
        def resources(self) -> list[Resource]:
            return [Resource("gpu", 0, {"uuid": "GPU-ledger-unusable", "fake": True,
                                        "ledger": True})]

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("DRYML_LEDGER_DIR", str(not_a_dir))
    monkeypatch.delenv("DRYML_LEDGER", raising=False)
    request = normalize_requirement({"default": {"gpu/0": 0.5}})
    with pytest.raises(ResourcesUnavailableError, match="DRYML_LEDGER=process"):
        Scheduler([CpuProvider(), SharedGpu()]).try_acquire(request)
    monkeypatch.setenv("DRYML_LEDGER", "process")
    assert Scheduler([CpuProvider(), SharedGpu()]).try_acquire(request) is not None


def test_dryml_resources_help_names_where_the_ledger_is() -> None:
    """It named $XDG_RUNTIME_DIR/dryml, which the code does not follow (found by an audit)."""
    shown = subprocess.run([sys.executable, "-m", "dryml.cli", "resources", "--help"],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert "/dev/shm/dryml-<uid>, else /tmp/dryml-<uid>" in " ".join(shown.split())


def test_a_reused_pid_is_not_taken_for_the_holder(tmp_path: Path) -> None:
    from dryml._process import start_time
    from dryml.context._ledger import Ledger

    ledger = Ledger(tmp_path / "ledger")
    parent = os.getppid()  # alive; rows name it with its real start time or another one
    with ledger.transaction() as tx:
        for pstart in (start_time(parent), "1"):
            tx.conn.execute(ROW, (parent, pstart, "GPU-a", 0.25, None))
    holdings = ledger.holdings()  # the row whose start time does not match is dropped
    assert [(h.pid, h.amount) for h in holdings] == [(parent, 0.25)]


#: a grant row as a writer inserts it (an older dryml's rows have no place: None)
ROW = ("INSERT INTO grants (pid, pstart, command, grant_id, resource, name, amount, since, "
       "place) VALUES (?, ?, 'x', 1, ?, 'gpu/0', ?, 0, ?)")


def test_rows_of_another_pid_namespace_or_machine_are_not_taken_for_dead(tmp_path: Path) -> None:
    """A process of another PID namespace (a container sharing /dev/shm) was checked by its
    pid here, found dead, and its 0.7 of a GPU given out again (found by an audit)."""
    from dryml.context._ledger import Ledger, _namespace

    ledger = Ledger(tmp_path / "ledger")
    gone = 2**22 + 12345  # no such pid here
    with ledger.transaction() as tx:
        for place, resource in (("a1b2c3d4-4026531836", "GPU-other"),
                                (_namespace(), "GPU-here"), (None, "GPU-older")):
            tx.conn.execute(ROW, (gone, "17", resource, 0.7, place))
    assert [(h.resource, h.elsewhere) for h in ledger.holdings()] == [("GPU-other", True)]
    env = {**os.environ, "DRYML_LEDGER_DIR": str(tmp_path / "ledger")}
    env.pop("DRYML_LEDGER", None)
    shown = cli_resources(env)
    assert f"{gone}*" in shown and "dryml resources --forget PID" in shown
    forgot = subprocess.run([sys.executable, "-m", "dryml.cli", "resources", "--forget",
                             str(gone)], env=env, capture_output=True, text=True, check=True)
    assert forgot.stdout.startswith(f"dropped 1 grant row(s) of pid {gone} of another PID")
    assert ledger.holdings() == []
    # never a row of this machine and namespace: a pid here is a process here (review)
    from dryml._process import start_time

    parent = os.getppid()
    with ledger.transaction() as tx:
        tx.conn.execute(ROW, (parent, start_time(parent), "GPU-here", 0.2, _namespace()))
    assert ledger.forget(parent) == 0
    assert [h.resource for h in ledger.holdings()] == ["GPU-here"]


def test_a_row_of_another_namespace_with_this_pid_and_start_is_anothers(tmp_path: Path) -> None:
    """This process's rows were matched by pid and start time alone: a process of another
    PID namespace with the same pid (started in the same tick) had its rows taken for this
    one's, left out of what others hold (its GPU share given out again) and written over."""
    from dryml._process import start_time
    from dryml.context._ledger import Ledger

    ledger = Ledger(tmp_path / "ledger")
    with ledger.transaction() as tx:
        tx.conn.execute(ROW, (os.getpid(), start_time(os.getpid()), "GPU-a", 0.7,
                              "a1b2c3d4-4026531836"))
        assert tx.used_by_others() == {"GPU-a": 700000}
        tx.record(1, {"GPU-a": ("gpu/0", 0.2)})
        tx.release(1)  # drops this process's row only
    assert [(h.resource, h.amount, h.elsewhere) for h in ledger.holdings()] == [
        ("GPU-a", 0.7, True)]


def test_a_ledger_truncated_in_place_gets_this_processs_grants_back(tmp_path: Path) -> None:
    """Emptied in place (same inode), the file lost this process's rows for good: another
    process then got 0.7 of a GPU this one held 0.7 of (found by an audit)."""
    from dryml.context._ledger import Ledger

    mine = Ledger(tmp_path / "ledger")
    with mine.transaction() as tx:
        tx.record(1, {"GPU-a": ("gpu/0", 0.7)})
    mine.path.write_bytes(b"")
    with mine.transaction():  # any transaction of this process
        pass
    assert [(h.resource, h.amount) for h in Ledger(tmp_path / "ledger").holdings()] == [
        ("GPU-a", 0.7)]


@pytest.mark.parametrize("amount", ["'x'", "-1.0", "2.5"])
def test_a_row_edited_by_hand_makes_the_ledger_unusable_saying_what_to_do(
        tmp_path: Path, amount: str) -> None:
    """A text amount raised bare TypeErrors in every call and in `dryml resources`; a negative
    one was trusted, and more than a whole GPU was given out (found by an audit)."""
    from dryml._process import start_time
    from dryml.context._ledger import Ledger
    from dryml.errors import ResourcesUnavailableError

    ledger = Ledger(tmp_path / "ledger")
    parent = os.getppid()  # alive: its row is not dropped as a dead holder's
    with ledger.transaction() as tx:
        tx.conn.execute(ROW.replace("?, 0, ?)", f"{amount}, 0, ?)"),
                        (parent, start_time(parent), "GPU-a", None))
    with pytest.raises(ResourcesUnavailableError, match="a grant row that dryml did not write"
                                                        ".*fix or remove it"):
        ledger.holdings()


def test_a_holders_command_keeps_the_script_name_however_deep_its_folder() -> None:
    from dryml._process import process_command

    deep = "/" + "/".join(["a-rather-long-folder-name"] * 12) + "/runs/train.py"
    proc = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); "
                             "time.sleep(60)", deep, "--lr", "0.1"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"  # exec is done
        shown = process_command(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert len(shown) <= 120
    assert "runs/train.py" in shown and shown.endswith("--lr 0.1"), shown


# -- CPUs: the ones a requirement names are held machine-wide --------------------------------

CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def test_cpus_of_two_processes_never_exceed_the_machine_and_a_killed_holder_frees_them(
        start) -> None:
    first = start({"default": {"num_cpus": CPUS}})  # every core of this machine
    second = start({"default": {"num_cpus": 1}})
    assert first.request(30).startswith("granted")
    answer = second.request(1)
    assert answer.startswith("unavailable"), answer
    assert "1 of cpu/0 (cpu:" in answer, answer
    assert f"held by pid {first.proc.pid} (" in answer and "holder.py" in answer
    listing = cli_resources(start.env)
    assert f"{first.proc.pid}" in listing and f"cpu/{CPUS - 1}" in listing

    second.ask(120)  # waits for the first process's CPUs...
    assert not second.answered_within(1.0)
    first.sigkill()  # ...which it gives back by dying, SIGKILL included
    answer = second.read()
    assert answer.startswith("granted"), answer
    listing = cli_resources(start.env)
    assert f"{first.proc.pid}" not in listing and f"{second.proc.pid}" in listing


def test_fractions_of_one_cpu_add_up_across_processes(start) -> None:
    first, second = start({"default": {"cpu/0": 0.6}}), start({"default": {"cpu/0": 0.6}})
    assert first.request(30).startswith("granted")
    answer = second.request(1)
    assert answer.startswith("unavailable") and "0.6 of cpu/0" in answer, answer
    assert start({"default": {"cpu/0": 0.4}}).request(30).startswith("granted")


def test_the_default_cpu_of_a_worker_is_not_held_machine_wide(start) -> None:
    """A requirement that names no CPU (every ordinary call) is never blocked by another
    program's CPUs, and blocks nobody: it is accounted in its own process only."""
    holder = start({"default": {"num_cpus": CPUS}})
    assert holder.request(30).startswith("granted")
    plain = start({"default": {}})
    assert plain.request(30).startswith("granted")
    listing = cli_resources(start.env)
    assert f"{holder.proc.pid}" in listing and f"{plain.proc.pid}" not in listing


def test_per_process_cpu_accounting_when_asked(start) -> None:
    every = {"default": {"num_cpus": CPUS}}
    first = start(every, DRYML_LEDGER="process")
    second = start(every, DRYML_LEDGER="process")
    assert first.request(30).startswith("granted")
    assert second.request(30).startswith("granted")


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="the per-user folder of POSIX systems")
def test_the_ledger_is_found_in_one_place_whatever_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """It followed XDG_RUNTIME_DIR, then TMPDIR: two programs run from a login shell and from
    cron (or two batch jobs with their own TMPDIR) kept two ledgers and each got 0.7 of one
    GPU (found by review). Only DRYML_LEDGER_DIR moves it."""
    from dryml.context._ledger import ledger_dir

    monkeypatch.delenv("DRYML_LEDGER_DIR", raising=False)
    seen = set()
    for runtime, tmp in ((None, None), (str(tmp_path), None), (None, str(tmp_path / "t"))):
        for name, value in (("XDG_RUNTIME_DIR", runtime), ("TMPDIR", tmp)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        seen.add(ledger_dir())
    assert len(seen) == 1 and next(iter(seen)).name == f"dryml-{os.getuid()}"
    monkeypatch.setenv("DRYML_LEDGER_DIR", str(tmp_path / "mine"))
    assert ledger_dir() == tmp_path / "mine"


def test_a_grant_whose_ledger_row_could_not_be_deleted_is_deleted_by_the_next_transaction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A release whose ledger delete failed (another process kept the ledger locked past the
    30 s wait) forgot the grant: its row, 0.7 of a GPU, outlived it until the process exited
    and blocked every other program (found by review). It is deleted by the next transaction
    now; and the wait happens outside the scheduler's lock."""
    from dryml.context import CpuProvider, Resource, ResourcesUnavailableError
    from dryml.context._ledger import Ledger
    from dryml.context._resources import normalize_requirement
    from dryml.context._scheduler import Scheduler

    class SharedGpu:
        def resources(self) -> list[Resource]:
            return [Resource("gpu", 0, {"uuid": "GPU-ledger-retry", "fake": True,
                                        "ledger": True})]

    monkeypatch.setenv("DRYML_LEDGER_DIR", str(tmp_path / "ledger"))
    monkeypatch.delenv("DRYML_LEDGER", raising=False)
    scheduler = Scheduler([CpuProvider(), SharedGpu()])
    grant = scheduler.try_acquire(normalize_requirement({"default": {"gpu/0": 0.7}}))
    assert grant is not None
    ledger = Ledger(tmp_path / "ledger")
    assert [h.amount for h in ledger.holdings()] == [0.7]
    real = Ledger.release

    def locked(self: Ledger, grant_id: int) -> None:
        assert not scheduler.cond._is_owned()  # type: ignore[attr-defined]
        raise ResourcesUnavailableError("database is locked")

    monkeypatch.setattr(Ledger, "release", locked)
    with pytest.raises(ResourcesUnavailableError, match="locked"):
        scheduler.release(grant)
    monkeypatch.setattr(Ledger, "release", real)
    assert [h.amount for h in ledger.holdings()] == [0.7]  # still there, remembered
    again = scheduler.try_acquire(normalize_requirement({"default": {"gpu/0": 0.2}}))
    assert again is not None
    assert [h.amount for h in ledger.holdings()] == [0.2]  # the stale row is gone
    scheduler.release(again)
    assert ledger.holdings() == []


def test_a_ledger_deleted_under_a_live_process_gets_its_grants_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tmp cleaner (or a logout) removed the ledger's folder under a live process: its grants
    then counted for nothing, and its own next grant failed with a raw sqlite error until it
    restarted (found by review). Its next ledger transaction makes the ledger anew and writes
    its live grants into it again."""
    import shutil

    from dryml.context import CpuProvider, Resource
    from dryml.context._ledger import Ledger
    from dryml.context._resources import normalize_requirement
    from dryml.context._scheduler import Scheduler

    class SharedGpu:
        def resources(self) -> list[Resource]:
            return [Resource("gpu", 0, {"uuid": "GPU-ledger-deleted", "fake": True,
                                        "ledger": True})]

    folder = tmp_path / "ledger"
    monkeypatch.setenv("DRYML_LEDGER_DIR", str(folder))
    monkeypatch.delenv("DRYML_LEDGER", raising=False)
    scheduler = Scheduler([CpuProvider(), SharedGpu()])
    held = scheduler.try_acquire(normalize_requirement({"default": {"gpu/0": 0.7}}))
    assert held is not None
    shutil.rmtree(folder)
    second = scheduler.try_acquire(normalize_requirement({"default": {"gpu/0": 0.2}}))
    assert second is not None
    assert sorted(h.amount for h in Ledger(folder).holdings()) == [0.2, 0.7]
    scheduler.release(held)
    scheduler.release(second)
    assert Ledger(folder).holdings() == []
