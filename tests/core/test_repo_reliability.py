"""Repo reliability with real processes: concurrent writers, SIGKILL mid-add, bad files."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from dryml.errors import DuplicateObjectError, RepoError
from dryml.repo import Repo, Selector
from dryml.repo._index import CHECKPOINT_EVERY, INDEX_NAME

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and processes")

ITEMS = textwrap.dedent("""
    import numpy as np
    from dryml import Object

    class Item(Object):
        def __init__(self, worker, i):
            self.worker, self.i = worker, i
            self.payload = np.random.default_rng(i).random(20000)

        def save_object_imp(self, store):
            store.put("payload", self.payload)

        def load_object_imp(self, store):
            self.payload = store.get("payload")
""")

WORKER = textwrap.dedent("""
    import os, signal, sys
    from repo_items import Item
    from dryml.repo import Repo, Selector
    import dryml.repo._repo as repo_module

    directory, worker, count, crash = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    repo = Repo(directory, durable=worker.endswith("durable"))
    replace = False
    if crash != "none":
        # Kill this process with SIGKILL at an exact point of add_object / delete. A new
        # object's add writes a temporary (write_temp), then in one index transaction
        # journals and renames it (os.replace) and commits; a replace renames through
        # write_file between its two transactions.
        real_temp, real_replace = repo_module.write_temp, os.replace
        def die():
            os.kill(os.getpid(), signal.SIGKILL)
        def temp_then_die(*args, **kwargs):
            if crash == "before-write":
                die()
            written = real_temp(*args, **kwargs)
            if crash == "temp-written":
                die()
            return written
        def replace_then_die(src, dst):
            if crash == "mid-write":
                die()  # journaled, not renamed
            real_replace(src, dst)
            die()  # renamed, not committed
        repo_module.write_temp = temp_then_die
        if crash in ("mid-write", "after-write", "replace-after-write"):
            os.replace = replace_then_die
        if crash == "replace-after-write":
            replace = True
        if crash == "delete":
            victim = repo.ids(Selector(Item))[0]
            repo_module.Path.unlink = lambda self, *a, **k: die()
            repo.delete(victim)
    for i in range(count):
        if i % 50 == 0:  # query while the others write: this worker's objects are all there
            assert len(repo.ids(where={"worker": worker})) == i
            # others add meanwhile: objects only ever appear, so count before and after
            before = len(repo)
            found = len(repo.get(Selector(Item), limit=5))
            assert min(5, before) <= found <= min(5, len(repo))
        dry_id = "setup-0" if replace else f"{worker}-{i}"
        repo.add_object(Item(worker, i, dry_id=dry_id), metadata={"worker": worker, "i": i},
                        replace=replace)
        if i == 0:
            print("adding", flush=True)
    print("done", flush=True)
""")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    (tmp_path / "repo_items.py").write_text(ITEMS)
    (tmp_path / "repo_worker.py").write_text(WORKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    pythonpath = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": pythonpath}


def _worker(tmp_path: Path, env: dict[str, str], directory: Path, worker: str, count: int,
            crash: str = "none") -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(tmp_path / "repo_worker.py"), str(directory),
                             worker, str(count), crash], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _assert_consistent(directory: Path) -> Repo:
    repo = Repo(directory)
    report = repo.check()
    assert report.ok, report.format()
    assert report.objects == report.files == len(repo)
    assert sorted(p.name for p in directory.glob("*.dry")) == sorted(
        e["file"] for e in repo.entries())
    assert list(directory.glob(".*.tmp")) == []
    return repo


def test_four_processes_adding_500_each(tmp_path: Path, env: dict[str, str]) -> None:
    directory = tmp_path / "repo"
    Repo(directory, create=True)
    procs = [_worker(tmp_path, env, directory, f"w{w}", 500) for w in range(4)]
    for proc in procs:
        _out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
    repo = _assert_consistent(directory)
    assert len(repo) == 2000
    seen = [(e["metadata"]["worker"], e["metadata"]["i"]) for e in repo.entries()]
    assert sorted(seen) == sorted((f"w{w}", i) for w in range(4) for i in range(500))
    assert len(repo.ids(where={"worker": "w2"})) == 500
    from repo_items import Item

    sample = repo.get(Selector(Item), limit=3)
    assert all(obj.payload.shape == (20000,) for obj in sample)


def test_durable_mode_writers(tmp_path: Path, env: dict[str, str]) -> None:
    directory = tmp_path / "repo"
    Repo(directory, create=True, durable=True)
    procs = [_worker(tmp_path, env, directory, f"w{w}-durable", 30) for w in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
    assert len(_assert_consistent(directory)) == 60


@pytest.mark.parametrize("point", ["before-write", "temp-written", "mid-write", "after-write",
                                   "replace-after-write", "delete"])
def test_sigkill_at_each_step_of_a_write(tmp_path: Path, env: dict[str, str], point: str) -> None:
    directory = tmp_path / "repo"
    Repo(directory, create=True)
    proc = _worker(tmp_path, env, directory, "setup", 3)
    assert proc.wait(timeout=120) == 0
    proc = _worker(tmp_path, env, directory, "crash", 1, point)
    assert proc.wait(timeout=120) == -signal.SIGKILL
    repo = _assert_consistent(directory)
    expected = {"before-write": 3, "temp-written": 3, "mid-write": 3, "after-write": 4,
                "replace-after-write": 3, "delete": 2}[point]
    assert len(repo) == expected
    if point == "replace-after-write":  # the new file was in place: the replace is finished
        assert repo.metadata("setup-0") == {"worker": "crash", "i": 0}
    if point == "after-write":  # the journal found the renamed file, with its metadata
        assert repo.metadata("crash-0") == {"worker": "crash", "i": 0}
    from repo_items import Item

    for obj in repo.get(Selector(Item)):
        assert obj.payload.shape == (20000,)


def test_sigkill_at_random_points_many_times(tmp_path: Path, env: dict[str, str]) -> None:
    directory = tmp_path / "repo"
    Repo(directory, create=True)
    rng = random.Random(1234)
    for round_ in range(12):
        proc = _worker(tmp_path, env, directory, f"r{round_}", 100000)
        assert proc.stdout is not None and proc.stdout.readline() == b"adding\n"
        time.sleep(rng.random() * 0.3)  # somewhere in the add loop
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        repo = _assert_consistent(directory)
        from repo_items import Item

        for obj in repo.get(Selector(Item), order_by="created", descending=True, limit=2):
            assert obj.payload.shape == (20000,)  # the newest objects are whole
    assert len(Repo(directory)) > 0


def test_corrupt_and_foreign_files_are_reported_and_skipped(tmp_path: Path,
                                                            env: dict[str, str]) -> None:
    directory = tmp_path / "repo"
    Repo(directory, create=True)
    assert _worker(tmp_path, env, directory, "w", 3).wait(timeout=120) == 0
    for path in directory.glob(".dryml-index.sqlite*"):
        path.unlink()
    good = sorted(directory.glob("*.dry"))
    (directory / "notes.txt").write_text("hello")
    (directory / "empty.dry").write_bytes(b"")
    (directory / "half.dry").write_bytes(good[0].read_bytes()[:200])
    (directory / "pickle.dry").write_bytes(b"\x80\x04\x95" + b"x" * 100)
    with pytest.warns(UserWarning, match="skipped") as caught:
        repo = Repo(directory)
    message = str(caught[0].message)
    assert all(name in message for name in ["notes.txt", "empty.dry", "half.dry", "pickle.dry"])
    assert len(repo) == 3
    assert {n for n, _ in repo.skipped} == {"notes.txt", "empty.dry", "half.dry", "pickle.dry"}
    report = repo.check()
    assert report.ok and {n for n, _ in report.skipped} == {n for n, _ in repo.skipped}
    assert {n for n, _ in repo.reindex().skipped} == {n for n, _ in repo.skipped}

    # An indexed file damaged later: check says so by name; the rest still works.
    data = bytearray(good[1].read_bytes())
    data[-60] ^= 0xFF
    good[1].write_bytes(bytes(data))
    report = repo.check()
    assert not report.ok and [n for n, _ in report.unreadable] == [good[1].name]
    assert len(repo.get()) == 3


def test_a_dead_writers_unfinished_add_does_not_block_an_open_repo(
        tmp_path: Path, env: dict[str, str]) -> None:
    directory = tmp_path / "repo"
    repo = Repo(directory, create=True)  # opened before the writer dies: no recovery at open
    proc = _worker(tmp_path, env, directory, "crash", 1, "after-write")
    assert proc.wait(timeout=120) == -signal.SIGKILL
    assert len(repo) == 0  # the file is there, but the add never finished
    from repo_items import Item

    with pytest.raises(DuplicateObjectError):  # the dead add is finished first: it is there
        repo.add_object(Item("again", 0, dry_id="crash-0"))
    assert repo.ids() == ["crash-0"]
    repo.add_object(Item("again", 0, dry_id="crash-0"), replace=True)
    assert repo.load("crash-0").worker == "again"
    assert _assert_consistent(directory).metadata("crash-0") == {"worker": "crash", "i": 0}


def _objects_in_the_database_file(directory: Path, copy: Path) -> int:
    """How many objects the index's main file holds by itself (its write-ahead log left out)."""
    import shutil
    import sqlite3

    shutil.copyfile(directory / INDEX_NAME, copy)
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT count(*) FROM objects").fetchone()[0])
    finally:
        conn.close()


def test_adds_reach_the_database_file_while_the_repo_stays_open_and_close_ends_the_thread(
        tmp_path: Path, env: dict[str, str]) -> None:
    """The write-ahead log is checkpointed by a background thread (not inside an add's
    commit): the index file itself catches up while the Repo is open, and ``close()`` leaves no
    thread behind; neither does a Repo that is dropped without ``close()``."""
    import gc
    import threading

    from repo_items import Item

    def checkpointers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "dryml-index-checkpoint"}

    earlier = checkpointers()  # other tests' Repos may not be collected yet
    directory = tmp_path / "repo"
    repo = Repo(directory, create=True)
    count = 3 * CHECKPOINT_EVERY
    for i in range(count):
        repo.add_object(Item("w", i, dry_id=f"w-{i}"))
    in_file, deadline = 0, time.monotonic() + 30
    while in_file < 2 * CHECKPOINT_EVERY and time.monotonic() < deadline:
        time.sleep(0.05)
        in_file = _objects_in_the_database_file(directory, tmp_path / "copy.sqlite")
    assert in_file >= 2 * CHECKPOINT_EVERY, "no checkpoint reached the index file"
    started = checkpointers() - earlier
    assert len(started) == 1
    repo.close()
    assert not any(thread.is_alive() for thread in started)
    assert len(Repo(directory)) == count  # and everything is still there

    dropped = Repo(directory)
    for i in range(CHECKPOINT_EVERY):
        dropped.add_object(Item("d", i, dry_id=f"d-{i}"))
    started = checkpointers() - earlier
    assert len(started) == 1
    del dropped
    gc.collect()
    for thread in started:
        thread.join(timeout=30)
        assert not thread.is_alive()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_the_background_checkpoint_syncs_the_index_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """After each checkpoint the thread syncs the index file itself (SQLite syncs it only at a
    checkpoint that reaches the log's end, which in a burst of adds is the one inside some
    caller's COMMIT: that add then waited for every page of the burst to reach the disk)."""
    from repo_items import Item

    from dryml.repo import _index

    synced: list[str] = []
    real = _index._datasync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(_index, "_datasync", spy)
    directory = tmp_path / "repo"
    repo = Repo(directory, create=True)
    for i in range(CHECKPOINT_EVERY):
        repo.add_object(Item("s", i, dry_id=f"s-{i}"))
    deadline = time.monotonic() + 30
    while not synced and time.monotonic() < deadline:
        time.sleep(0.02)
    repo.close()
    assert synced and set(synced) == {str((directory / INDEX_NAME).resolve())}


DELETE = "import sys; from dryml.repo import Repo; print(Repo(sys.argv[1]).delete(sys.argv[2]))"


@pytest.mark.parametrize("deleter", ["repo-delete", "delete-ignoring-intents"])
def test_an_object_deleted_while_another_process_saves_it_is_not_indexed_without_its_file(
        tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        deleter: str) -> None:
    """A save (replace) has written the new file and not yet indexed it when another process
    deletes the object. ``Repo.delete`` refuses (the object is being written); a process that
    deletes the row and the file without looking at intents (an older dryml-core) makes the
    save fail: either way the index never lists an object whose file is gone."""
    import sqlite3

    import numpy as np
    from repo_items import Item

    import dryml.repo._repo as repo_module

    directory = tmp_path / "repo"
    repo = Repo(directory, create=True)
    item = Item("w", 0, dry_id="x")
    repo.add_object(item)
    real_write_file = repo_module.write_file
    deletes: list[subprocess.CompletedProcess[str]] = []

    def write_then_delete(*args: object, **kwargs: object) -> object:
        stamp = real_write_file(*args, **kwargs)  # the new file is in place, not indexed yet
        if deleter == "repo-delete":
            deletes.append(subprocess.run([sys.executable, "-c", DELETE, str(directory), "x"],
                                          env=env, capture_output=True, text=True, timeout=120))
        else:
            conn = sqlite3.connect(directory / INDEX_NAME)
            with conn:
                name = conn.execute("SELECT file FROM objects WHERE id = 'x'").fetchone()[0]
                conn.execute("DELETE FROM objects WHERE id = 'x'")
                conn.execute("DELETE FROM kv WHERE id = 'x'")
            conn.close()
            (directory / name).unlink()
        return stamp

    monkeypatch.setattr(repo_module, "write_file", write_then_delete)
    item.payload = np.ones(5)
    if deleter == "repo-delete":
        repo.save(item)
        assert deletes[0].returncode != 0
        assert "is being written by process" in deletes[0].stderr
        monkeypatch.undo()
        after = _assert_consistent(directory)
        assert after.load("x").payload.tolist() == [1.0] * 5
        assert after.delete("x") == 1  # once the save is done, the delete goes through
    else:
        with pytest.raises(RepoError, match="were deleted"):
            repo.add_object(item, replace=True)
        monkeypatch.undo()
        assert len(_assert_consistent(directory)) == 0


REINDEX = "import sys; from dryml.repo import Repo; Repo(sys.argv[1]).reindex()"


def test_a_reindex_during_a_delete_does_not_bring_the_object_back(
        tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A delete removes the rows, then the files. Another process's reindex between the two
    indexed the file again: the index listed an object whose file was gone the moment after
    (check failed, loading it said it is gone)."""
    from repo_items import Item

    directory = tmp_path / "repo"
    repo = Repo(directory, create=True)
    repo.add_objects([Item("w", 0, dry_id="victim"), Item("w", 1, dry_id="keep")])
    real_unlink = Path.unlink
    reindexed: list[subprocess.CompletedProcess[str]] = []

    def reindex_then_unlink(self: Path, *args: object, **kwargs: object) -> None:
        if self.name == "victim.dry":  # the rows are gone, the file not yet
            reindexed.append(subprocess.run([sys.executable, "-c", REINDEX, str(directory)],
                                            env=env, capture_output=True, text=True,
                                            timeout=120))
        real_unlink(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "unlink", reindex_then_unlink)
    assert repo.delete("victim") == 1
    monkeypatch.undo()
    assert reindexed and reindexed[0].returncode == 0, reindexed[0].stderr
    assert _assert_consistent(directory).ids() == ["keep"]


REPLACE = textwrap.dedent("""
    import sys
    from repo_items import Item
    from dryml.repo import Repo
    item = Item("w", int(sys.argv[2]), dry_id="x")
    item.payload = item.payload[:3] * 0
    Repo(sys.argv[1]).add_object(item, replace=True)
""")


def test_an_object_replaced_after_a_query_is_not_loaded_with_other_arguments(
        tmp_path: Path, env: dict[str, str]) -> None:
    """A query selected ``Item("w", 0)``; another process then replaced the object by
    ``Item("w", 7)`` with the same id, and the first use of the selected object loaded that
    one: an object whose arguments were not what the query matched. A replace that keeps the
    arguments (new state) loads."""
    directory = tmp_path / "repo"
    Repo(directory, create=True).add_object(_item("w", 0))

    def replace_by(number: int) -> None:
        subprocess.run([sys.executable, "-c", REPLACE, str(directory), str(number)], env=env,
                       check=True, timeout=120)

    hit_repo = Repo(directory)
    hit = hit_repo.get(Selector("Item", args=("w", 0)))[0]
    replace_by(0)
    assert hit.payload.tolist() == [0.0, 0.0, 0.0] and hit.dry_args == ("w", 0)
    # selected again, each way, while the stale object is still held: a new object, loaded
    for select_again in (lambda r: r.get(Selector("Item", args=("w", 7)))[0],
                         lambda r: r.get("x")[0], lambda r: r.get_one("x"),
                         lambda r: next(iter(r)), lambda r: r.get(lambda d: True)[0]):
        replace_by(0)
        hit_repo = Repo(directory)
        hit = hit_repo.get(Selector("Item", args=("w", 0)))[0]
        replace_by(7)
        with pytest.raises(RepoError, match=r"'x' .* was replaced after it was selected, "
                           r"by one with other arguments \(now args=\[\"w\", 7\]"):
            hit.payload  # noqa: B018 - the first use loads it
        again = select_again(hit_repo)
        assert again is not hit and again.dry_args == ("w", 7)
        assert again.payload.tolist() == [0.0, 0.0, 0.0]


def test_a_loaded_object_another_process_replaced_is_not_returned_nor_saved_over_it(
        tmp_path: Path, env: dict[str, str]) -> None:
    """This process added (or loaded) Item("w", 0); another process replaced it by
    Item("w", 7). A query for ("w", 7) returned the held ("w", 0) object, and save() then
    wrote it over the other process's, whose object was lost without a word. A replace with
    the same arguments (new state) was hidden the same way."""
    import numpy as np
    from repo_items import Item

    directory = tmp_path / "repo"
    repo = Repo(directory, create=True)
    held = _item("w", 0)
    repo.add_object(held)

    def replace_by(number: int) -> None:
        subprocess.run([sys.executable, "-c", REPLACE, str(directory), str(number)], env=env,
                       check=True, timeout=120)

    replace_by(7)
    with pytest.raises(RepoError, match=r"'x' .* was replaced by another writer .* nothing "
                                        r"was saved"):
        repo.save()
    found = repo.get(Selector("Item", args=("w", 7)))
    assert [o.dry_args for o in found] == [("w", 7)] and found[0] is not held
    with pytest.raises(RepoError, match="was replaced by another writer"):
        repo.save(held)  # found by review: the query above had dropped held's version
    assert repo.get_one("x").payload.tolist() == [0.0, 0.0, 0.0]
    assert Repo(directory).get_one("x").dry_args == ("w", 7)  # the newer one is kept

    loaded = repo.get_one("x")
    loaded.payload = loaded.payload + 1  # changed in memory, then replaced with new state
    retrained = Item("w", 7, dry_id="x")
    retrained.payload = np.full(3, 5.0)
    Repo(directory).add_object(retrained, replace=True)  # another Repo: another writer
    with pytest.raises(RepoError, match="was replaced by another writer"):
        repo.save(loaded)
    assert repo.get_one("x") is not loaded
    assert repo.get_one("x").payload.tolist() == [5.0, 5.0, 5.0]
    mine = repo.get_one("x")
    mine.payload = mine.payload + 2
    assert repo.save() == 1  # nobody replaced it since: saved, and found again as is
    assert repo.get_one("x") is mine
    assert Repo(directory).get_one("x").payload.tolist() == [7.0, 7.0, 7.0]


def _item(worker: str, i: int) -> Any:
    from repo_items import Item

    return Item(worker, i, dry_id="x")


SET_METADATA = ("import sys; from dryml.repo import Repo; "
                "Repo(sys.argv[1]).set_metadata('x', {'acc': 0.93})")

SAVER = textwrap.dedent("""
    import os, subprocess, sys
    import numpy as np
    import dryml.repo._repo as repo_module
    from repo_items import Item
    from dryml.repo import Repo

    directory, how, set_metadata = sys.argv[1], sys.argv[2], sys.argv[3]
    real_write_file = repo_module.write_file
    def set_then_write(*args, **kwargs):
        # another process records metrics while this one writes the file
        subprocess.run([sys.executable, "-c", set_metadata, directory], check=True)
        stamp = real_write_file(*args, **kwargs)
        if how == "killed":
            os._exit(9)  # the file is in place, the write not finished: recovery ends it
        return stamp
    repo_module.write_file = set_then_write
    repo = Repo(directory)
    item = repo.load("x")
    item.payload = np.ones(5)
    repo.save(item)
""")


@pytest.mark.parametrize("how", ["finished", "killed"])
def test_metadata_set_by_another_process_during_a_save_is_kept(
        tmp_path: Path, env: dict[str, str], how: str) -> None:
    """``save()`` keeps the object's metadata: what the index holds when the save ends (or
    when recovery finishes the save of a killed process), not what it held when it began."""
    from repo_items import Item

    directory = tmp_path / "repo"
    Repo(directory, create=True).add_object(Item("w", 0, dry_id="x"), metadata={"epoch": 1})
    (tmp_path / "saver.py").write_text(SAVER)
    proc = subprocess.run([sys.executable, str(tmp_path / "saver.py"), str(directory), how,
                           SET_METADATA], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == (0 if how == "finished" else 9), proc.stderr
    repo = _assert_consistent(directory)
    assert repo.load("x").payload.tolist() == [1.0] * 5
    assert repo.metadata("x") == {"epoch": 1, "acc": 0.93}
    repo.reindex()  # the file holds the metadata of when the save began; the index wins
    assert repo.metadata("x") == {"epoch": 1, "acc": 0.93}


MODELS = textwrap.dedent("""
    from dryml import Object

    class Model(Object):
        def __init__(self, layers):
            self.layers = layers

    class BigModel(Model):
        pass
""")

REINDEX = "import sys; from dryml.repo import Repo; Repo(sys.argv[1]).reindex()"

REPLACE_AND_DIE = textwrap.dedent("""
    import os, sys
    import repo_models
    import dryml.repo._repo as repo_module
    from dryml.repo import Repo

    repo = Repo(sys.argv[1])
    model = repo.load(sys.argv[2])
    model.layers = 5
    repo_module.write_file = lambda *args, **kwargs: os._exit(9)  # killed while replacing
    repo.add_object(model, replace=True)
""")


@pytest.mark.parametrize("between", ["reindex", "dead-replacer"])
def test_a_long_lived_repo_records_the_classes_of_what_it_adds(
        tmp_path: Path, env: dict[str, str], between: str) -> None:
    """A Repo remembers which classes it has recorded in the index, to skip them on the next
    add. That must not outlive the index's class tables: another process's reindex rebuilds
    them from the files (without the class of objects since deleted), and an add retried
    past a dead writer's intent rolled back the transaction that recorded them. Either way the
    object added next must be found by its class."""
    (tmp_path / "repo_models.py").write_text(MODELS)
    from repo_models import BigModel, Model

    directory = tmp_path / "repo"
    worker = Repo(directory, create=True)  # a search worker, say, that stays open
    base = Model(0)
    worker.add_object(base)
    if between == "reindex":
        first = BigModel(1)
        worker.add_object(first)
        worker.delete(first)
        subprocess.run([sys.executable, "-c", REINDEX, str(directory)], env=env, check=True,
                       timeout=120)
        added = BigModel(2)
        worker.add_object(added)
    else:
        proc = subprocess.run([sys.executable, "-c", REPLACE_AND_DIE, str(directory),
                               base.dry_id], env=env, timeout=120)
        assert proc.returncode == 9
        added = BigModel(2)
        worker.add_objects([added, base], replace=True)  # meets the dead writer's intent
    fresh = _assert_consistent(directory)
    assert fresh.ids(Selector(BigModel)) == [added.dry_id]
    assert sorted(fresh.ids(Selector(Model))) == sorted([base.dry_id, added.dry_id])
    assert fresh.ids(Selector("BigModel")) == [added.dry_id]
