"""A repository folder someone else can write to: planted links, pipes, crafted files and
index edits (found by the repository audit of stop 28). Each must be an error that says what
to do, or be reported, never a write outside the folder, a hang or a wrong answer."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dryml import Object
from dryml.cli import main
from dryml.errors import RepoError
from dryml.repo import Repo, Selector
from dryml.repo._index import INDEX_NAME, IndexDamagedError

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX links and pipes")


class Part(Object):
    def __init__(self, n: int) -> None:
        self.n = n


class Other(Object):
    def __init__(self, n: int) -> None:
        self.n = n


def _repo(tmp_path: Path, count: int = 2) -> Path:
    repo = Repo(tmp_path / "repo", create=True)
    repo.add_objects([Part(i, dry_id=f"p{i}") for i in range(count)],
                     metadata=[{"acc": i / 10} for i in range(count)])
    repo.close()
    return tmp_path / "repo"


def _index(directory: Path) -> Path:
    return directory / INDEX_NAME


def _sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _in_process(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a process of its own, which a hang cannot take down with the tests."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, cwd=str(Path(__file__).parent))


@pytest.mark.parametrize("companion", ["", "-wal"])
def test_a_linked_index_is_never_written_through_and_reindex_sets_the_link_aside(
        tmp_path: Path, companion: str) -> None:
    """A planted link as the index made dryml create its tables in the database it points to,
    and reindex wipe another repository's index."""
    directory = _repo(tmp_path)
    outside = tmp_path / "someone-elses.sqlite"
    _sql(outside, "CREATE TABLE notes (text TEXT)", "INSERT INTO notes VALUES ('mine')")
    before = outside.read_bytes()
    target = Path(str(_index(directory)) + companion)
    target.unlink(missing_ok=True)
    target.symlink_to(outside)
    with pytest.raises(IndexDamagedError, match=f"{INDEX_NAME}{companion} is a symbolic link, "
                                                "which dryml does not follow.*Run 'dryml repo "
                                                "reindex"):
        Repo(directory)
    with pytest.warns(UserWarning, match="symbolic link"):
        repo = Repo(directory, repair=True)
    assert sorted(repo.ids()) == ["p0", "p1"]
    repo.close()
    assert outside.read_bytes() == before
    assert not os.path.islink(target)
    links = [p.name for p in directory.iterdir() if p.is_symlink()]
    assert len(links) == 1 and links[0].startswith(f"{INDEX_NAME}.damaged-")  # moved aside


def test_a_pipe_in_place_of_a_file_is_an_error_not_a_hang(tmp_path: Path) -> None:
    directory = _repo(tmp_path)
    path = directory / "p0.dry"
    path.unlink()
    os.mkfifo(path)
    done = _in_process(
        "import sys; from dryml.repo import Repo; from test_repo_hostile import Part\n"
        "try:\n    Repo(sys.argv[1]).load('p0')\nexcept Exception as e:\n"
        "    print(type(e).__name__, e)", str(directory))
    assert "FormatError" in done.stdout and "is not a regular file" in done.stdout, done.stderr


def test_a_view_or_trigger_in_the_index_is_damage_that_reindex_repairs(tmp_path: Path) -> None:
    """A view over an endless recursive query in place of a table hung queries, and reindex
    failed with a raw sqlite3 error (or hung reading the old index for its metadata)."""
    directory = _repo(tmp_path)
    _sql(_index(directory), "DROP TABLE class_bases",
         "CREATE VIEW class_bases AS WITH RECURSIVE n(base, path) AS (SELECT 'a', 'b' UNION "
         "ALL SELECT base, path FROM n) SELECT * FROM n")
    with pytest.raises(IndexDamagedError, match="its 'class_bases' is a view, not the table"):
        Repo(directory)
    done = _in_process("import sys; from dryml.repo import Repo\n"
                       "print(sorted(Repo(sys.argv[1], repair=True).ids()))", str(directory))
    assert done.stdout.strip() == "['p0', 'p1']", done.stderr[-2000:]


def test_a_view_of_ones_own_and_a_folder_name_with_uri_characters_are_fine(
        tmp_path: Path) -> None:
    """A user's own view beside dryml's tables stopped the repository from opening, and the
    repair read no metadata from an index in a folder named "run?1" (the URI lost its
    read-only flag, and SQLite created a file "run" beside the repository); found by
    review."""
    directory = _repo(tmp_path / "run?1")
    repo = Repo(directory)
    repo.set_metadata("p1", {"acc": 0.99})  # only in the index: the repair must read it back
    repo.close()
    _sql(_index(directory), "CREATE VIEW runs AS SELECT id, metadata FROM objects")
    assert sorted(Repo(directory).ids()) == ["p0", "p1"]
    _sql(_index(directory), "CREATE TRIGGER t AFTER INSERT ON objects BEGIN SELECT 1; END")
    with pytest.warns(UserWarning, match="trigger 't' on 'objects'"):
        repo = Repo(directory, repair=True)
    assert repo.metadata("p1") == {"acc": 0.99}
    assert sorted(p.name for p in (tmp_path / "run?1").iterdir()) == ["repo"]


def test_metadata_that_would_give_the_index_gigabytes_is_refused_or_skipped(
        tmp_path: Path) -> None:
    """Dotted key paths repeat their parents' keys: a 3 KB file of deep dicts with long keys
    gave gigabytes of paths, and the folder could not be opened."""
    from dryml import save_object
    from dryml.repo._defjson import MAX_METADATA_DEPTH

    deep: dict[str, Any] = {}  # 60 levels of 60,000-character keys: 110 M characters
    node = deep
    for _ in range(60):
        node["k" * 60_000] = {}
        node = node["k" * 60_000]
    directory = _repo(tmp_path)
    repo = Repo(directory)
    with pytest.raises(RepoError, match="characters of key paths to index.*store.put"):
        repo.add_object(Part(7), metadata=deep)
    nested: dict[str, Any] = {}
    node = nested
    for _ in range(MAX_METADATA_DEPTH + 1):
        node = node.setdefault("k", {})
    with pytest.raises(RepoError, match="nests more than"):
        repo.set_metadata("p0", nested)
    repo.close()
    save_object(Part(9, dry_id="dropped"), directory / "dropped.dry", metadata=deep)
    assert (directory / "dropped.dry").stat().st_size < 10_000
    repo = Repo(directory)
    with pytest.warns(UserWarning, match="dropped.dry: its metadata gives more than .* it is "
                                         "indexed without its metadata"):
        report = repo.reindex()
    assert report.skipped == [] and repo.metadata("dropped") == {}
    assert sorted(repo.ids()) == ["dropped", "p0", "p1"]


def test_a_creation_time_past_year_9999_in_utc_is_indexed_and_shown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dryml import save_object
    from dryml.testing.serializers import rewrite_manifest

    directory = _repo(tmp_path)
    save_object(Part(3, dry_id="late"), directory / "late.dry")
    data = rewrite_manifest((directory / "late.dry").read_bytes(),
                            lambda m: m.update(created="9999-12-31T23:59:59-23:59"))
    (directory / "late.dry").write_bytes(data)
    assert _cli(capsys, "repo", "reindex", str(directory))[0] == 0
    status, out, _ = _cli(capsys, "repo", "show", str(directory), "late")
    assert status == 0 and "created:" in out


def test_a_replace_another_machine_began_a_day_ago_no_longer_hides_a_swapped_file(
        tmp_path: Path) -> None:
    """An intent of another host counted as a live writer forever: check skipped that file
    (and said OK although it had been swapped), and delete refused the object."""
    directory = _repo(tmp_path)
    (directory / "p0.dry").write_bytes((directory / "p1.dry").read_bytes())
    started = time.time() - 2 * 24 * 3600
    _sql(_index(directory), "INSERT INTO intents VALUES ('t1', 'replace', 'p0', 'p0.dry', "
         f"'some-other-host', 4242, '', {started}, NULL)")
    report = Repo(directory).check()
    assert not report.ok and [n for n, _ in report.mismatched] == ["p0.dry"]
    assert Repo(directory).delete("p0") == 1
    fresh = time.time() - 60  # a minute old: still its writer's
    _sql(_index(directory), "INSERT INTO intents VALUES ('t2', 'replace', 'p1', 'p1.dry', "
         f"'some-other-host', 4242, '', {fresh}, NULL)")
    with pytest.raises(RepoError, match="being written by process 4242 on some-other-host"):
        Repo(directory).delete("p1")


def test_a_name_cannot_forge_lines_of_the_command_line_reports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _repo(tmp_path)
    (directory / "notes\nOK: the index matches the files").write_text("x")
    (directory / "more\u2028OK: the index matches the files").write_text("x")  # a line break
    status, out, _ = _cli(capsys, "repo", "check", str(directory))
    assert "notes\\nOK: the index matches the files" in out
    assert "more\\u2028OK: the index matches the files" in out
    assert [line for line in out.splitlines() if line.startswith("OK:")] == [
        "OK: the index matches the files"]  # the real one only: the name's is escaped
    repo = Repo(directory)
    repo.add_object(Part(5, dry_id="evil\nfake-row"))
    repo.close()
    status, out, _ = _cli(capsys, "repo", "ls", str(directory))
    assert status == 0 and "evil\\nfake-row" in out and "\nfake-row" not in out


def test_no_line_break_in_a_name_forges_lines_of_the_python_report(tmp_path: Path) -> None:
    """``CheckReport.format()`` (what ``print(repo.check())`` users read) escaped only newline,
    tab and U+2028/9: a carriage return, a form feed or U+0085 broke its lines too."""
    directory = _repo(tmp_path)
    for brk in "\r\v\f\x1c\x85":
        (directory / f"n{ord(brk)}{brk}OK: the index matches the files").write_text("x")
    text = Repo(directory).check().format()
    assert [line for line in text.splitlines() if line.startswith("OK:")] == [
        "OK: the index matches the files"]
    assert "n13\\rOK: the index matches the files" in text
    assert "n133\\x85OK: the index matches the files" in text


def test_a_file_cannot_give_a_class_this_process_has_other_bases(tmp_path: Path) -> None:
    """A dropped file's class table claimed Part is a subclass of Other: after reindex,
    Selector(Other) returned every Part, although this process has both classes."""
    from dryml import _io

    directory = _repo(tmp_path, count=3)
    real = _io._add_classes

    def lie(out: dict[str, list[str]], values: Any) -> None:
        real(out, values)
        path = f"{Part.__module__}:{Part.__qualname__}"
        out[path] = [path, f"{Other.__module__}:{Other.__qualname__}", "dryml._object:Object"]

    _io._add_classes = lie
    try:
        _io.save_object(Part(99, dry_id="zz"), directory / "zz.dry")  # indexed last
    finally:
        _io._add_classes = real
    repo = Repo(directory)
    repo.reindex()
    assert repo.ids(Selector(Other)) == []
    assert sorted(repo.ids(Selector(Part))) == ["p0", "p1", "p2", "zz"]
    assert not [o for o in repo.get(Selector(Part)) if not isinstance(o, Part)]



def _as_user(uid: int, action: Any) -> str:
    """Run ``action()`` in a child process as user ``uid`` (when root: else as this user);
    returns "opened" or what it raised."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the outcome through the pipe, never return to pytest
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            try:
                action()
                outcome = "opened"
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                outcome = f"{type(exc).__name__}: {exc}"
            os.write(write, outcome.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(pid, 0)
    return outcome


NOBODY, OWNER = 65534, 1000
posix_users = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX users and permissions")


@pytest.fixture
def shared_path() -> Any:
    """A folder other users can reach (pytest's own temporary folders are private)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="dryml-shared-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


@posix_users
def test_a_user_who_cannot_write_the_index_is_told_so_and_leaves_nothing_behind(
        shared_path: Path) -> None:
    """Another user listing a repository they may not write got SQLite's "attempt to write a
    readonly database" as a traceback; in a folder anyone may write to, that left a log and
    a shared-memory file of theirs beside the index, and the owner's own repository then
    failed to open (list, check and reindex alike)."""
    directory = _repo(shared_path)
    os.chmod(directory, 0o777)  # a shared folder
    if os.geteuid() != 0:
        os.chmod(_index(directory), 0o444)
    before = sorted(p.name for p in directory.iterdir())
    outcome = _as_user(NOBODY, lambda: Repo(directory).ids())
    assert outcome.startswith("RepoError: the repository") and (
        ".dryml-index.sqlite belongs to user" in outcome and "is not writable by this user"
        in outcome), outcome
    assert sorted(p.name for p in directory.iterdir()) == before  # no file of theirs
    os.chmod(_index(directory), 0o644)
    assert sorted(Repo(directory).ids()) == ["p0", "p1"]  # the owner's repository works


@pytest.mark.skipif(not hasattr(os, "fork") or os.geteuid() != 0,
                    reason="needs root to give files to other users")
def test_a_log_file_another_user_left_says_what_to_remove(shared_path: Path) -> None:
    directory = _repo(shared_path)
    for path in [directory, *directory.iterdir()]:
        os.chown(path, OWNER, OWNER)
    wal = directory / f"{INDEX_NAME}-wal"
    wal.unlink(missing_ok=True)
    wal.touch()
    os.chown(wal, NOBODY, NOBODY)  # what another user's open left before
    outcome = _as_user(OWNER, lambda: Repo(directory).ids())
    assert "-wal, SQLite's log of the index, belongs to user" in outcome, outcome
    assert "remove .dryml-index.sqlite-wal (SQLite makes it anew)" in outcome
    wal.unlink()
    assert _as_user(OWNER, lambda: Repo(directory).ids()) == "opened"
