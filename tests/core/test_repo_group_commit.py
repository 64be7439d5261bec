"""Group commit: adds made one call at a time share index commits. A killed process loses none
of them, other processes see them within the window (or at flush / close), and a commit that
fails leaves every add's file to be indexed (real SQLite index, real processes)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dryml import Object
from dryml.errors import DuplicateObjectError, RepoError
from dryml.repo import Repo
from dryml.repo._index import COMMIT_WINDOW, INDEX_NAME, Index
from dryml.repo._journal import JOURNAL_PREFIX

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and processes")


class Point(Object):
    def __init__(self, x: int) -> None:
        self.x = x


ITEMS = textwrap.dedent("""
    from dryml import Object

    class Item(Object):
        def __init__(self, x):
            self.x = x
""")

WORKER = textwrap.dedent("""
    import os, signal, sys, time
    from group_items import Item
    from dryml.errors import RepoError
    from dryml.repo import Repo, _journal
    from dryml.repo._index import Index

    directory, mode, count, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    _journal.TRIM_AT = 64  # emptied between adds were every add committed: it must not be
    repo = Repo(directory, commit_window=float(window))

    def fail(self, conn):
        raise __import__("sqlite3").OperationalError("disk I/O error")

    for i in range(count):
        repo.add_object(Item(i))
        if mode == "fail-commits":  # after the first add, which began the session
            Index._commit = fail
    if mode == "flush":
        repo.flush()
    if mode == "fail-commits":
        try:
            repo.close()
        except RepoError as exc:
            print("close:", exc, flush=True)
        sys.exit(0)
    print("added", flush=True)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(600)
""")


@pytest.fixture(autouse=True)
def _items(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "group_items.py").write_text(ITEMS)
    (tmp_path / "group_worker.py").write_text(WORKER)
    monkeypatch.syspath_prepend(str(tmp_path))


def _worker(tmp_path: Path, directory: Path, mode: str, count: int,
            window: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(tmp_path / "group_worker.py"), str(directory),
                             mode, str(count), str(window)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _committed(directory: Path) -> int:
    """How many objects another connection sees in the index."""
    conn = sqlite3.connect(directory / INDEX_NAME, timeout=60)
    try:
        return int(conn.execute("SELECT count(*) FROM objects").fetchone()[0])
    finally:
        conn.close()


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=60)


def test_adds_waiting_in_an_open_group_survive_a_killed_process(tmp_path: Path) -> None:
    directory = tmp_path / "repo"
    Repo(directory, create=True).close()
    proc = _worker(tmp_path, directory, "kill", 12, 60)  # the group stays open
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    assert out == "added\n"
    assert _committed(directory) == 0  # none of the twelve adds had committed
    assert len(list(directory.glob("*.dry"))) == 12
    repo = Repo(directory, trust=["group_items"])  # the dead process's journal lists them
    assert len(repo) == 12
    assert sorted(obj.x for obj in repo.get()) == list(range(12))
    report = repo.check()
    assert report.ok, report.format()
    assert list(directory.glob(f"{JOURNAL_PREFIX}*")) == []


@pytest.mark.parametrize(("mode", "window"), [("stay", COMMIT_WINDOW), ("flush", 60)])
def test_other_processes_see_adds_within_the_window_or_after_flush(
        tmp_path: Path, mode: str, window: float) -> None:
    directory = tmp_path / "repo"
    reader = Repo(directory, create=True, trust=["group_items"])
    proc = _worker(tmp_path, directory, mode, 5, window)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "added\n"
        if mode == "flush":
            assert _committed(directory) == 5  # at once
        deadline = time.monotonic() + 60
        while len(reader) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)  # the worker sleeps without close: its background thread commits
        assert sorted(obj.x for obj in reader.get()) == list(range(5))
    finally:
        _stop(proc)


def test_a_process_whose_commits_fail_leaves_its_adds_to_the_next_open(tmp_path: Path) -> None:
    directory = tmp_path / "repo"
    Repo(directory, create=True).close()
    proc = _worker(tmp_path, directory, "fail-commits", 4, 60)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "could not record the last 4 add(s)" in out and "disk I/O error" in out
    assert "their files are in place" in out
    assert _committed(directory) == 0
    (journal,) = directory.glob(f"{JOURNAL_PREFIX}*")  # kept: it lists the four adds
    repo = Repo(directory, trust=["group_items"])
    assert sorted(obj.x for obj in repo.get()) == [0, 1, 2, 3]
    assert repo.check().ok and not journal.exists()


def test_a_failed_group_commit_is_reported_and_its_adds_indexed_by_the_next_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "repo"
    repo = Repo(directory, create=True, commit_window=60)
    for i in range(3):
        repo.add_object(Point(i))
    real = Index._commit

    def fail(self: Index, conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Index, "_commit", fail)
    with pytest.raises(RepoError, match=r"could not record the last 3 add\(s\).*disk is full"):
        repo.flush()
    assert _committed(directory) == 0 and len(list(directory.glob("*.dry"))) == 3
    assert len(repo) == 0  # this Repo does not pretend otherwise
    monkeypatch.setattr(Index, "_commit", real)
    repo.add_object(Point(3), metadata={"after": True})  # the lost three ride with it
    repo.flush()
    assert _committed(directory) == 4
    assert sorted(obj.x for obj in repo.get()) == [0, 1, 2, 3]
    repo.close()
    assert Repo(directory).check().ok


def test_an_add_that_fails_inside_a_group_undoes_only_itself(tmp_path: Path) -> None:
    directory = tmp_path / "repo"
    repo = Repo(directory, create=True, commit_window=60)
    first, second = Point(1), Point(2)
    repo.add_objects([first, second])
    repo.add_object(Point(3))  # joins the group
    with pytest.raises(DuplicateObjectError):
        repo.add_object(Point(1, dry_id=first.dry_id))
    repo.add_object(Point(4))
    assert _committed(directory) == 0  # still one open group
    repo.flush()
    assert _committed(directory) == 4
    assert sorted(obj.x for obj in Repo(directory).get()) == [1, 2, 3, 4]
    assert list(directory.glob(".*.tmp")) == []


def test_other_writes_commit_the_group_first_and_window_zero_commits_each_add(
        tmp_path: Path) -> None:
    directory = tmp_path / "repo"
    repo = Repo(directory, create=True, commit_window=60)
    kept, dropped = Point(1), Point(2)
    repo.add_objects([kept])
    repo.add_objects([dropped])
    repo.delete(dropped)  # not grouped: the group commits, then the delete
    assert _committed(directory) == 1
    repo.close()
    eager = Repo(directory, commit_window=0)
    eager.add_object(Point(3))
    assert _committed(directory) == 2
    for bad in (-1, "5ms", True, 61):
        with pytest.raises(RepoError, match="commit_window must be a number of seconds"):
            Repo(directory, commit_window=bad)  # type: ignore[arg-type]


def test_threads_adding_to_one_repo_share_its_groups(tmp_path: Path) -> None:
    directory = tmp_path / "repo"
    repo = Repo(directory, create=True)
    errors: list[BaseException] = []

    def add(worker: int) -> None:
        try:
            for i in range(50):
                repo.add_object(Point(worker * 1000 + i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    repo.close()
    assert _committed(directory) == 200
    assert os.listdir(directory).count(INDEX_NAME) == 1
    assert Repo(directory).check().ok
