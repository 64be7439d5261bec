"""Files changed behind a Repo's back, ids in two files, a damaged index: all noticed, all
fixable from the command line (real .dry files, real SQLite index files)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dryml import Object, save_object
from dryml.cli import main
from dryml.errors import RepoError
from dryml.repo import Repo, Selector

WEIGHTS = np.random.default_rng(0).random(1000)


class Net(Object):
    def __init__(self, layers: int, lr: float = 0.1) -> None:
        self.layers = layers
        self.weights = WEIGHTS.copy()  # incompressible: stored raw

    def save_object_imp(self, store: Any) -> None:
        store.put("weights", self.weights)

    def load_object_imp(self, store: Any) -> None:
        self.weights = store.get("weights")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = Repo(tmp_path / "repo", create=True)
    repo.add_object(Net(1, dry_id="net"))
    repo.add_objects([Net(10 + i, dry_id=f"other{i}") for i in range(3)])
    return repo


def _tamper_same_size(path: Path) -> int:
    """Overwrite ``path`` with a file of the same size, id and class but other arguments,
    and give it back its old mtime (as a copy with preserved times would). Returns the new
    ``layers``."""
    before = path.stat()
    other = path.with_name("other.tmp")
    # The manifest is compressed, so its size moves with the arguments in no simple way: try
    # other layer counts until one gives the same size.
    for layers in range(2, 1000):
        save_object(Net(layers, dry_id="net"), other, metadata={})
        if other.stat().st_size == before.st_size:
            break
    assert other.stat().st_size == before.st_size, "no same-size variant found"
    os.replace(other, path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    return layers


def test_a_same_size_file_with_other_arguments_fails_check(
        repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert repo.check().ok
    layers = _tamper_same_size(repo.directory / "net.dry")
    report = repo.check()
    assert not report.ok
    [(name, why)] = report.mismatched
    assert name == "net.dry"
    assert "changed after it was indexed" in why
    assert "args=[1]" in why and f"args=[{layers}]" in why
    status, out, _ = _cli(capsys, "repo", "check", str(repo.directory))
    assert status == 1
    assert ("MISMATCH      net.dry: the file changed after it was indexed: its arguments "
            "differ from the index") in out
    assert f"INCONSISTENT: run 'dryml repo reindex {repo.directory}'" in out


def test_a_load_through_the_repo_refuses_a_tampered_file(repo: Repo) -> None:
    layers = _tamper_same_size(repo.directory / "net.dry")
    fresh = Repo(repo.directory)
    [found] = fresh.get(Selector(Net, args=(1,)))  # the index still says layers=1
    with pytest.raises(RepoError, match="net.dry changed after it was indexed as object 'net'"):
        _ = found.layers
    with pytest.raises(RepoError, match="dryml repo reindex"):
        Repo(repo.directory).load("net")
    assert [o.layers for o in fresh.get(Selector(Net, args=(10,)))] == [10]  # others load
    # reindex takes the file as it is now: queries then match what loads
    fresh.reindex()
    assert fresh.get(Selector(Net, args=(1,))) == []
    assert [o.layers for o in Repo(repo.directory).get(Selector(Net, args=(layers,)))] == [
        layers]
    assert fresh.check().ok


def test_a_damaged_member_with_an_unchanged_manifest_fails_check(repo: Repo) -> None:
    path = repo.directory / "net.dry"
    data = bytearray(path.read_bytes())
    at = bytes(data).index(WEIGHTS.tobytes()[800:840])
    data[at] ^= 0xFF  # same size, same manifest: only the member's checksum can tell
    path.write_bytes(bytes(data))
    report = repo.check()
    assert not report.ok
    [(name, why)] = report.unreadable
    assert name == "net.dry" and "does not match its checksum" in why


def test_duplicate_ids_are_reported_with_both_paths(
        repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    directory = repo.directory
    shutil.copyfile(directory / "other0.dry", directory / "backup.dry")  # an identical copy
    save_object(Net(99, dry_id="net"), directory / "aaa.dry")  # same id, other content
    report = repo.check()
    assert not report.ok and not report.unindexed
    by_id = {d.dry_id: d for d in report.duplicates}
    assert by_id["other0"].files == ["other0.dry", "backup.dry"] and by_id["other0"].identical
    assert by_id["net"].files == ["net.dry", "aaa.dry"] and not by_id["net"].identical
    status, out, _ = _cli(capsys, "repo", "check", str(directory))
    assert status == 1
    assert ("DUPLICATE     object 'other0' is in 2 identical copies: other0.dry (indexed), "
            "backup.dry") in out
    assert f"remove the extra copies: rm {directory / 'backup.dry'}" in out
    assert ("DUPLICATE     object 'net' is in 2 files that differ: net.dry (indexed), "
            "aaa.dry") in out
    assert f"keep net.dry: rm {directory / 'aaa.dry'}" in out
    assert "an object id is in more than one file" in out

    # reindex is deterministic: the file named after the id wins, whatever sorts first
    for _ in range(2):
        status, out, _ = _cli(capsys, "repo", "reindex", str(directory))
        assert status == 0 and "indexed 4 object(s)" in out
        assert "duplicate: object 'net' is in 2 files that differ: net.dry (indexed), aaa.dry" in out
        assert Repo(directory).info("net")["file"] == "net.dry"
        assert Repo(directory).load("net").layers == 1
    # doing what the report says resolves it
    (directory / "backup.dry").unlink()
    (directory / "aaa.dry").unlink()
    status, out, _ = _cli(capsys, "repo", "check", str(directory))
    assert status == 0 and "OK: the index matches the files" in out


def test_reindex_of_copies_without_the_canonical_name_picks_the_first_by_name(
        tmp_path: Path) -> None:
    directory = tmp_path / "repo"
    directory.mkdir()
    save_object(Net(2, dry_id="x"), directory / "b.dry")
    save_object(Net(3, dry_id="x"), directory / "a.dry")
    with pytest.warns(UserWarning, match="object 'x' is in 2 files that differ: a.dry"):
        repo = Repo(directory)
    assert repo.info("x")["file"] == "a.dry"
    [dup] = repo.reindex().duplicates
    assert dup.files == ["a.dry", "b.dry"]
    [dup] = repo.check().duplicates
    assert dup.files == ["a.dry", "b.dry"] and dup.indexed


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_index_is_rebuilt_by_reindex(
        repo: Repo, capsys: pytest.CaptureFixture[str], damage: str) -> None:
    directory = repo.directory
    repo.add_objects([Net(i, dry_id=f"many{i}") for i in range(300)], metadata={"batch": 1})
    repo.close()
    index = directory / ".dryml-index.sqlite"
    data = index.read_bytes()
    index.write_bytes(os.urandom(len(data)) if damage == "garbage" else data[:len(data) // 2])
    with pytest.raises(RepoError, match=f"is damaged .*Run 'dryml repo reindex {directory}'"):
        Repo(directory)
    status, _, err = _cli(capsys, "repo", "ls", str(directory))
    assert status == 1 and "dryml repo reindex" in err
    status, out, _ = _cli(capsys, "repo", "reindex", str(directory))
    assert status == 0
    assert "the index was damaged" in out and "indexed 304 object(s)" in out
    kept = [p for p in directory.glob(".dryml-index.sqlite.damaged-*")
            if not p.name.endswith(("-wal", "-shm"))]
    assert len(kept) == 1 and kept[0].name in out  # kept aside, not deleted
    fresh = Repo(directory)
    assert len(fresh) == 304 and fresh.load("net").layers == 1
    assert fresh.metadata("many7") == {"batch": 1}  # metadata given to add is in the files
    status, out, _ = _cli(capsys, "repo", "check", str(directory))
    assert status == 0 and "OK" in out


def _old_index(directory: Path) -> None:
    """Make the index what dryml-core wrote before it recorded stamps (no such columns)."""
    with sqlite3.connect(directory / ".dryml-index.sqlite") as conn:
        conn.execute("ALTER TABLE objects DROP COLUMN digest")
        conn.execute("ALTER TABLE objects DROP COLUMN mtime")
    conn.close()


def test_an_index_written_before_digests_opens_and_check_records_them(repo: Repo) -> None:
    repo.close()
    _old_index(repo.directory)
    old = Repo(repo.directory)
    assert old.load("other1").layers == 11  # a load compares the definition and records it
    report = old.check()
    assert report.ok and report.stamped == 3
    rows = old._index.query("SELECT id, digest, mtime FROM objects")
    assert all(digest and mtime for _, digest, mtime in rows)
    assert old.check().stamped == 0


def test_an_old_index_still_catches_a_tampered_file(repo: Repo) -> None:
    repo.close()
    _old_index(repo.directory)
    _tamper_same_size(repo.directory / "net.dry")
    old = Repo(repo.directory)
    with pytest.raises(RepoError, match="is not the file that was indexed as object 'net'"):
        _ = old.get(Selector(Net, args=(1,)))[0].layers
    [(name, why)] = old.check().mismatched
    assert name == "net.dry" and "its arguments differ from the index" in why


def test_check_json_lists_duplicates(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copyfile(repo.directory / "net.dry", repo.directory / "copy.dry")
    status, out, _ = _cli(capsys, "repo", "check", str(repo.directory), "--json")
    report = json.loads(out)
    assert status == 1 and not report["ok"]
    assert report["duplicates"] == [{"dry_id": "net", "files": ["net.dry", "copy.dry"],
                                     "indexed": True, "identical": True}]


class Pair(Object):
    """Holds a value (another Pair, a list of them, bytes)."""

    def __init__(self, value: Any = None) -> None:
        self.value = value


def test_shared_children_are_indexed_once_each_and_a_crafted_chain_is_skipped(
        tmp_path: Path) -> None:
    """Rebuilding the index expanded every holder of a shared child into a full copy, reading
    its members again each time: a 1 KB file of 17 objects, each holding the next twice,
    took seconds and hundreds of MB, and a few more levels would never finish."""
    child = Pair(b"w" * 10_000)  # large bytes: a member of the file, not inline
    shared = Pair([child, child])
    node = Pair(0)
    for _ in range(30):
        node = Pair([node, node])
    save_object(shared, tmp_path / "shared.dry")
    save_object(node, tmp_path / "chain.dry")
    with pytest.warns(UserWarning, match="skipped"):
        repo = Repo(tmp_path)  # no index yet: built from the files
    assert [name for name, _ in repo.skipped] == ["chain.dry"]
    assert "over 64 MB written out" in repo.skipped[0][1]
    assert repo.ids() == [shared.dry_id]
    assert repo.ids(Selector.from_def(shared)) == [shared.dry_id]
    assert repo.get_one(shared.dry_id).value[0].value == b"w" * 10_000
    repo.close()


def test_reindex_takes_a_changed_files_metadata_from_the_file(
        repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by review: after a file was replaced by another object under the same id,
    reindex kept the index's metadata, so the new object carried the old one's metrics."""
    repo.set_metadata("net", {"metrics": {"accuracy": 0.5}})
    repo.set_metadata("other0", {"metrics": {"accuracy": 0.9}})  # unchanged: kept
    path = repo.directory / "net.dry"
    save_object(Net(99, dry_id="net"), path)  # written without a Repo: no metadata
    repo.close()
    status, out, _ = _cli(capsys, "repo", "reindex", str(repo.directory))
    assert status == 0
    assert "changed: net: its file changed after it was indexed; its metadata is now the " \
           "file's own" in out
    again = Repo(repo.directory)
    assert again.metadata("net") == {} and again.get_one("net").dry_args == (99,)
    assert again.metadata("other0") == {"metrics": {"accuracy": 0.9}}
    assert again.ids(where={"metrics.accuracy": 0.5}) == []
    assert again.reindex().changed == []  # indexed as it is now


# -- an index edited by hand never reaches outside the folder, nor stops the repair ----------


def _edit_index(directory: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(directory / ".dryml-index.sqlite")
    for sql, params in statements:
        conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_a_crafted_delete_intent_never_deletes_a_file_outside_the_folder(
        repo: Repo, tmp_path: Path) -> None:
    """Found by review: any open (even 'dryml repo ls') finished a dead process's delete
    intent, and an intent naming '/abs/path' deleted that file."""
    repo.close()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    _edit_index(repo.directory, (
        "INSERT INTO intents VALUES ('t', 'delete', 'x', ?, ?, 999999, '', 0, NULL)",
        (str(victim), os.uname().nodename)))
    assert len(Repo(repo.directory).ids()) == 4
    assert victim.read_text() == "precious"


def test_a_crafted_file_name_in_the_index_is_damage_not_a_path_to_follow(
        repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by review: delete() removed, and add_object(replace=True) overwrote, the file an
    edited index named ('/abs/victim', '../victim2.txt')."""
    repo.close()
    victim, victim2 = tmp_path / "victim.txt", tmp_path / "victim2.txt"
    victim.write_text("precious")
    victim2.write_text("precious too")
    _edit_index(repo.directory,
                ("UPDATE objects SET file = ? WHERE id = 'net'", (str(victim),)),
                ("UPDATE objects SET file = '../victim2.txt' WHERE id = 'other0'", ()))
    again = Repo(repo.directory)
    for attempt in (lambda: again.delete("net"),
                    lambda: again.add_object(Net(10, dry_id="other0"), replace=True),
                    lambda: again.get_one("net").weights):
        with pytest.raises(RepoError, match="is damaged .*not a .dry file of this folder"):
            attempt()
    assert victim.read_text() == "precious" and victim2.read_text() == "precious too"
    again.close()
    assert _cli(capsys, "repo", "reindex", str(repo.directory))[0] == 0
    assert sorted(Repo(repo.directory).ids()) == ["net", "other0", "other1", "other2"]


@pytest.mark.parametrize(("what", "sql"), [
    ("definition", "UPDATE objects SET definition = 'garbage'"),
    ("metadata", "UPDATE objects SET metadata = 'garbage'"),
    ("metadata", "UPDATE objects SET metadata = '[1]'"),
    ("size", "UPDATE objects SET size = 'big'"),
])
def test_an_index_value_edited_into_garbage_is_an_error_line_and_reindex_repairs_it(
        repo: Repo, capsys: pytest.CaptureFixture[str], what: str, sql: str) -> None:
    """Found by review: tracebacks from 'dryml repo ls', and from reindex, the repair."""
    repo.close()
    _edit_index(repo.directory, (sql, ()))
    status, _, err = _cli(capsys, "repo", "ls", str(repo.directory))
    assert status == 1
    assert err.startswith("dryml: error: the repository index") and f"its {what} is" in err
    assert "dryml repo reindex" in err and "Traceback" not in err
    assert _cli(capsys, "repo", "reindex", str(repo.directory))[0] == 0
    assert _cli(capsys, "repo", "ls", str(repo.directory))[0] == 0


@pytest.mark.parametrize("intent", [
    ("t", "delete", "x", "f.dry", "HOST", 99999999999999, "", 0, None),  # no such pid
    ("t", "add", "x", "f.dry", "HOST", 999999, "", 0, "garbage"),  # not JSON
])
def test_a_crafted_intent_neither_stops_an_open_nor_the_repair(
        repo: Repo, capsys: pytest.CaptureFixture[str], intent: tuple[Any, ...]) -> None:
    repo.close()
    row = tuple(os.uname().nodename if v == "HOST" else v for v in intent)
    _edit_index(repo.directory, ("INSERT INTO intents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row))
    assert _cli(capsys, "repo", "ls", str(repo.directory))[0] == 0
    assert _cli(capsys, "repo", "reindex", str(repo.directory))[0] == 0


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_journal_that_is_not_a_regular_file_does_not_hang_an_open(
        repo: Repo, kind: str) -> None:
    """Found by review: a dead session's journal that was a FIFO, or a link to /dev/zero,
    made every open of the repository hang."""
    repo.close()
    name = ".dryml-index.sqlite.adds-deadbeef"
    if kind == "fifo":
        os.mkfifo(repo.directory / name)
    else:
        os.symlink(kind, repo.directory / name)
    _edit_index(repo.directory, (
        "INSERT INTO intents VALUES ('deadbeef', 'session', '', ?, ?, 999999, '', 0, NULL)",
        (name, os.uname().nodename)))
    # in a process of its own, which a hang (or a read of /dev/zero) cannot take down with us
    opening = subprocess.run(
        [sys.executable, "-c", "import sys; from dryml.repo import Repo; "
         "print(len(Repo(sys.argv[1]).ids()))", str(repo.directory)],
        capture_output=True, text=True, timeout=120)
    assert opening.stdout.strip() == "4", opening.stderr[-2000:]
    assert not os.path.lexists(repo.directory / name)


class _Spec(Object):
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec


def test_indexing_a_file_imports_nothing_its_class_paths_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dict argument with a "cls" key reads as a class path. Indexing it (reindex, or `dryml
    repo init`) looked the path up with getattr on an imported module, whose PEP 562
    __getattr__ imported the submodule the file named (numpy.testing, dryml.testing; found by
    review). The lookup now reads only the module's own namespace."""
    import types

    asked: list[str] = []
    lazy = types.ModuleType("lazy_pkg_for_test")

    def on_demand(name: str) -> Any:  # what numpy's and dryml's __getattr__ do
        asked.append(name)
        raise AttributeError(name)

    lazy.__getattr__ = on_demand  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "lazy_pkg_for_test", lazy)
    folder = tmp_path / "r"
    folder.mkdir()
    save_object(_Spec({"a": {"cls": "lazy_pkg_for_test:testing.Thing"},
                       "b": {"cls": "lazy_pkg_for_test:Thing"}}), folder / "x.dry")
    with Repo(folder, create=True) as repo:  # indexes the file found in the folder
        assert len(repo.ids(_Spec)) == 1
        repo.reindex()
    assert asked == []


def test_an_index_definition_edited_by_hand_fails_check_and_reindex_restores_it(
        repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """The file keeps its digest while the index's copy of its definition (which queries
    match) says other arguments: check said ok and a query for layers=5 returned the object
    of layers=1 (found by review). check now compares the two."""
    index = repo.directory / ".dryml-index.sqlite"
    repo.close()
    db = sqlite3.connect(index)
    (definition,) = db.execute("SELECT definition FROM objects WHERE id = 'net'").fetchone()
    edited = json.loads(definition)
    assert edited["dry_args"] == [1]
    edited["dry_args"] = [5]
    db.execute("UPDATE objects SET definition = ? WHERE id = 'net'", (json.dumps(edited),))
    db.execute("UPDATE kv SET value = 5 WHERE id = 'net' AND key = 'a.0'")
    db.commit()
    db.close()
    status, out, _ = _cli(capsys, "repo", "check", str(repo.directory))
    assert status == 1
    assert "MISMATCH" in out and "net.dry" in out and "the index's copy of the definition" in out
    assert _cli(capsys, "repo", "reindex", str(repo.directory))[0] == 0
    with Repo(repo.directory) as again:
        assert again.check().ok
        assert again.ids(Selector(Net, args=[5])) == []
        assert again.ids(Selector(Net, args=[1])) == ["net"]


@pytest.mark.parametrize(("edit", "said"), [
    ("UPDATE kv SET value = 5 WHERE id = 'net' AND key = 'a.0'",
     "key/value entries (what queries match) differ from its definition at a.0"),
    ("DELETE FROM kv WHERE id = 'net' AND key = 'a.0'", "differ from its definition at a.0"),
    ("UPDATE objects SET cls = 'test_repo_tamper:Other' WHERE id = 'net'",
     "the index's class column says 'test_repo_tamper:Other'"),
    ("UPDATE objects SET cat = (SELECT cat FROM objects WHERE id = 'other0') WHERE id = 'net'",
     "configuration digest was changed"),
])
def test_query_columns_edited_by_hand_fail_check_and_reindex_restores_them(
        repo: Repo, capsys: pytest.CaptureFixture[str], edit: str, said: str) -> None:
    """What queries match besides the definition (the key/value entries, the class and
    configuration digest columns) must say what the index's definition says: a kv value edited
    to 5 made a query for layers=5 return the object of layers=1 while check said ok (found by
    review)."""
    index = repo.directory / ".dryml-index.sqlite"
    repo.close()
    db = sqlite3.connect(index)
    db.execute(edit)
    db.commit()
    db.close()
    status, out, _ = _cli(capsys, "repo", "check", str(repo.directory))
    assert status == 1
    assert "MISMATCH" in out and "net.dry" in out and said in out
    assert _cli(capsys, "repo", "reindex", str(repo.directory))[0] == 0
    with Repo(repo.directory) as again:
        assert again.check().ok
        assert again.ids(Selector(Net, args=[5])) == []
        assert again.ids(Selector(Net, args=[1])) == ["net"]
