"""The journal of adds: one per process and Repo, gone after close, kept short, and a dead
process's journal is finished on the next open (real SQLite index, real processes)."""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from forking import run_forked

from dryml import Object, load_object, save_object
from dryml.errors import DuplicateObjectError, RepoError
from dryml.repo import Repo
from dryml.repo._files import file_name
from dryml.repo._index import INDEX_NAME, process_identity
from dryml.repo._journal import JOURNAL_PREFIX, TRIM_AT


class Point(Object):
    def __init__(self, x: int) -> None:
        self.x = x


def _journals(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{JOURNAL_PREFIX}*"))


def _sessions(directory: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(directory / INDEX_NAME)
    try:
        return conn.execute("SELECT token, file FROM intents WHERE op = 'session'").fetchall()
    finally:
        conn.close()


def test_a_session_lives_from_the_first_add_until_close_or_collection(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", create=True)
    assert _journals(repo.directory) == [] and _sessions(repo.directory) == []
    repo.add_object(Point(1))
    (journal,) = _journals(repo.directory)
    assert [name for _, name in _sessions(repo.directory)] == [journal.name]
    repo.add_objects([Point(2), Point(3)])
    assert _journals(repo.directory) == [journal]  # one per process and Repo
    repo.close()
    assert _journals(repo.directory) == [] and _sessions(repo.directory) == []
    repo.add_object(Point(4))  # a closed Repo reopens, with a new session
    assert len(_journals(repo.directory)) == 1
    directory = repo.directory
    del repo
    gc.collect()
    assert _journals(directory) == [] and _sessions(directory) == []
    assert len(Repo(directory)) == 4
    assert Repo(directory).check().ok


def test_the_journal_is_emptied_as_it_grows(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", create=True)
    for i in range(400):  # about 60 bytes per entry: twice what TRIM_AT holds
        repo.add_object(Point(i))
    (journal,) = _journals(repo.directory)
    assert 0 < journal.stat().st_size <= TRIM_AT + 200
    assert len(repo) == 400


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant_dead_session(directory: Path, lines: list[str]) -> Path:
    """A session intent of a process that has ended, with a journal holding ``lines``."""
    host, _, _ = process_identity()
    journal = directory / f"{JOURNAL_PREFIX}deadbeef"
    journal.write_text("".join(line + "\n" for line in lines))
    conn = sqlite3.connect(directory / INDEX_NAME)
    with conn:
        conn.execute("INSERT INTO intents VALUES ('deadbeef', 'session', '', ?, ?, ?, ?, 0, NULL)",
                     (journal.name, host, _dead_pid(), ""))
    conn.close()
    return journal


def test_a_dead_processs_journal_is_finished_and_its_bad_lines_ignored(tmp_path: Path) -> None:
    directory = tmp_path / "repo"
    Repo(directory, create=True).close()
    # What a process killed between its rename and its commit leaves: the file, no row.
    save_object(Point(7, dry_id="p7"), directory / "p7.dry", metadata={"run": 3})
    outside = tmp_path / "outside.dry"
    save_object(Point(8, dry_id="p8"), outside)
    journal = _plant_dead_session(directory, [
        json.dumps(["p7", "p7.dry"]),
        json.dumps(["p8", "../outside.dry"]),  # an edited journal: never outside the folder
        json.dumps(["p9", "p9.dry"]),  # killed before its rename: no file, nothing to do
        json.dumps(["p7", f"{INDEX_NAME}"]),  # not an object file
        '["torn',  # a line cut short by the kill
    ])
    repo = Repo(directory)  # the open finishes the dead process's adds
    assert repo.ids() == ["p7"]
    assert repo.metadata("p7") == {"run": 3}  # from the file, as the add gave it
    assert repo.load("p7").x == 7
    assert not journal.exists() and _sessions(directory) == []
    assert outside.exists() and repo.check().ok


def test_a_stray_file_of_a_dead_add_is_finished_before_the_id_is_taken(tmp_path: Path) -> None:
    directory = tmp_path / "repo"
    repo = Repo(directory, create=True)  # open while the other process dies: no recovery yet
    save_object(Point(1, dry_id="p"), directory / "p.dry", metadata={"by": "dead"})
    _plant_dead_session(directory, [json.dumps(["p", "p.dry"])])
    with pytest.raises(DuplicateObjectError):  # the dead add is finished first: it is there
        repo.add_object(Point(2, dry_id="p"))
    assert repo.metadata("p") == {"by": "dead"} and repo.load("p").x == 1


def test_threads_adding_at_once_share_one_session(tmp_path: Path) -> None:
    import threading

    repo = Repo(tmp_path / "repo", create=True)
    start = threading.Barrier(4)

    def add(t: int) -> None:
        start.wait()
        for i in range(25):
            repo.add_object(Point(100 * t + i))

    threads = [threading.Thread(target=add, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(repo) == 100 and len(_journals(repo.directory)) == 1
    assert len(_sessions(repo.directory)) == 1
    repo.close()
    assert _journals(repo.directory) == [] and Repo(repo.directory).check().ok


class Slow(Object):
    """Loading it in the test's process waits until the test lets it go (a thread stays
    inside the load); in a forked child it loads at once."""

    entered: ClassVar[threading.Event] = threading.Event()
    release: ClassVar[threading.Event] = threading.Event()
    hold_in: ClassVar[int] = -1

    def __init__(self, x: int) -> None:
        self.x = x

    def load_object_imp(self, store: Any) -> None:
        if os.getpid() == Slow.hold_in:
            Slow.entered.set()
            Slow.release.wait(30)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_a_child_forked_while_threads_hold_repo_locks_can_add_and_load(tmp_path: Path) -> None:
    repo = Repo(tmp_path, create=True)
    first, second, new = Slow(1), Slow(2), Point(5)
    repo.add_objects([first, second, Point(0)])
    Slow.entered.clear()
    Slow.release.clear()
    Slow.hold_in = os.getpid()
    # one thread is inside a lazy load (user code runs under the loader's lock) ...
    loading = threading.Thread(target=Repo(tmp_path).load, args=(first.dry_id,))
    loading.start()
    assert Slow.entered.wait(30)
    # ... and another holds the lock of this Repo's index (as between two statements of a
    # query; not an SQLite transaction, which would rightly make the child's add wait)
    inside, leave = threading.Event(), threading.Event()

    def hold_index() -> None:
        with repo._index._lock:
            inside.set()
            leave.wait(30)

    writer = threading.Thread(target=hold_index)
    writer.start()
    assert inside.wait(30)

    def child() -> None:
        assert Repo(tmp_path).load(second.dry_id).x == 2
        repo.add_object(new)
        assert Repo(tmp_path).load(new.dry_id).x == 5

    try:
        assert run_forked(child) == 0
    finally:
        Slow.release.set()
        leave.set()
        loading.join(30)
        writer.join(30)
    assert Repo(tmp_path).load(new.dry_id).x == 5


def test_ids_whose_file_names_collide_keep_both_objects(tmp_path: Path) -> None:
    directory = tmp_path / "repo"
    repo = Repo(directory, create=True)
    unsafe = "run/1"  # not a safe file name: its file is id-<sha256>.dry
    spelled_alike = file_name(unsafe)[: -len(".dry")]  # a safe id spelled like that name
    assert file_name(spelled_alike) == file_name(unsafe)
    repo.add_object(Point(1, dry_id=unsafe), metadata={"who": "first"})
    repo.add_object(Point(2, dry_id=spelled_alike), metadata={"who": "second"})
    repo.add_object(Point(3, dry_id=f"{spelled_alike}-0"), replace=True)  # a replace adds too
    copied = directory / "p4.dry"  # a file put in the folder, not indexed (yet)
    save_object(Point(40, dry_id="elsewhere"), copied)
    repo.add_object(Point(4, dry_id="p4"))  # its own name is taken: it gets another
    for dry_id, x in ((unsafe, 1), (spelled_alike, 2), (f"{spelled_alike}-0", 3), ("p4", 4)):
        assert repo.load(dry_id).x == x
    assert repo.metadata(unsafe) == {"who": "first"}
    assert load_object(copied).x == 40  # left as it was
    assert len({e["file"] for e in repo.entries()}) == 4
    fresh = Repo(directory)
    assert sorted(fresh.ids()) == sorted([unsafe, spelled_alike, f"{spelled_alike}-0", "p4"])
    assert fresh.check().unindexed == ["p4.dry (object 'elsewhere')"]  # reported, kept


def test_a_dead_sessions_journal_does_not_bring_back_an_object_being_deleted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "repo"
    repo = Repo(directory, create=True)
    repo.add_object(Point(1, dry_id="x"))
    repo.add_object(Point(2, dry_id="y"))
    # the process that added x died since; its journal still lists the add
    _plant_dead_session(directory, [json.dumps(["x", "x.dry"])])
    real_unlink = Path.unlink

    def unlink(path: Path, *args: Any, **kwargs: Any) -> None:
        if path.name == "x.dry":  # the delete has committed; another process opens now
            Repo(directory).close()
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert repo.delete("x") == 1
    monkeypatch.undo()
    fresh = Repo(directory)
    assert fresh.ids() == ["y"] and not (directory / "x.dry").exists()
    assert fresh.check().ok


def test_an_error_after_the_commit_keeps_the_objects_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dryml.repo import _index

    class NoThread:  # as when the process may start no more threads
        def __init__(self, path: str) -> None:
            raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_index, "_Checkpointer", NoThread)
    repo = Repo(tmp_path / "repo", create=True)
    for i in range(_index.CHECKPOINT_EVERY + 5):  # past the commit that asks for a checkpoint
        repo.add_object(Point(i, dry_id=f"p{i}"))
    repo.close()
    fresh = Repo(tmp_path / "repo")
    assert len(fresh) == _index.CHECKPOINT_EVERY + 5 and fresh.check().ok


def test_a_process_killed_while_it_waits_to_register_leaves_no_journal(tmp_path: Path) -> None:
    directory = tmp_path / "repo"
    Repo(directory, create=True).close()
    code = ("import sys; from dryml.repo import Repo; from test_repo_journal import Point; "
            "repo = Repo(sys.argv[1]); print('open', flush=True); sys.stdin.readline(); "
            "repo.add_object(Point(1))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code, str(directory)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    holder = sqlite3.connect(directory / INDEX_NAME, isolation_level=None)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "open\n"
        holder.execute("BEGIN IMMEDIATE")  # another writer's long transaction
        assert proc.stdin is not None
        proc.stdin.write("add\n")
        proc.stdin.flush()
        time.sleep(0.5)  # its first add waits for the index to register its session
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.communicate()
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    assert _journals(directory) == []
    assert Repo(directory).check().ok


def test_closing_a_repo_while_an_add_is_under_way_fails_that_add_cleanly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dryml.repo import _repo

    directory = tmp_path / "repo"
    repo = Repo(directory, create=True)
    real_write_temp = _repo.write_temp

    def closed_meanwhile(*args: Any, **kwargs: Any) -> Any:
        written = real_write_temp(*args, **kwargs)
        repo.close()  # as another thread might
        return written

    monkeypatch.setattr(_repo, "write_temp", closed_meanwhile)
    with pytest.raises(RepoError, match="closed while an add was under way"):
        repo.add_object(Point(1, dry_id="p1"))
    monkeypatch.undo()
    repo.add_object(Point(2, dry_id="p2"))  # and the Repo goes on
    assert repo.ids() == ["p2"] and _journals(directory) != []
    repo.close()
    assert _journals(directory) == [] and Repo(directory).check().ok
    assert not list(directory.glob(".*.tmp"))
