"""``dryml repo ls|show|check|reindex``: what a user sees on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dryml import Object
from dryml.cli import main
from dryml.errors import RepoError
from dryml.repo import Repo


class Net(Object):
    def __init__(self, layers: int, lr: float = 0.1) -> None:
        self.layers = layers


class Forest(Object):
    def __init__(self, trees: int) -> None:
        self.trees = trees


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    repo = Repo(tmp_path / "repo", create=True)
    for i in range(4):
        repo.add_object(Net(i, lr=i / 10, dry_id=f"net{i}"),
                        metadata={"metrics": {"accuracy": 0.5 + i / 10}})
    repo.add_object(Forest(100, dry_id="forest"))
    return repo.directory


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_ls_table(repo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "repo", "ls", str(repo_dir))
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["DRY_ID", "CLASS", "ARGUMENTS", "SIZE", "METADATA"]
    assert any(line.startswith("net2") and "2, lr=0.2" in line for line in lines)
    assert lines[-1] == "5 object(s)"


def test_ls_filters_and_order(repo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def ids(*args: str) -> list[str]:
        status, out, _ = _run(capsys, "repo", "ls", str(repo_dir), "--json", *args)
        assert status == 0
        return [e["dry_id"] for e in json.loads(out)]

    assert sorted(ids("--class", "Net")) == ["net0", "net1", "net2", "net3"]
    assert ids("--class", "Forest") == ["forest"]
    assert ids("--where", "metrics.accuracy>=0.7", "--order-by", "metrics.accuracy",
               "--desc") == ["net3", "net2"]
    assert ids("--where", "metrics.accuracy>0.7") == ["net3"]
    assert ids("--where", "kwargs.lr=0.1") == ["net1"]
    assert ids("--where", "args.0=100") == ["forest"]
    assert ids("--order-by", "metrics.accuracy", "--limit", "2") == ["net0", "net1"]


def test_show(repo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "repo", "show", str(repo_dir), "net1")
    assert status == 0
    assert "dry_id:     net1" in out and f"class:      {__name__}:Net" in out
    assert '"accuracy": 0.6' in out
    status, out, _ = _run(capsys, "repo", "show", str(repo_dir), "net1", "--json")
    entry: dict[str, Any] = json.loads(out)
    assert entry["definition"]["dry_args"] == [1]
    status, _, err = _run(capsys, "repo", "show", str(repo_dir), "nope")
    assert status == 1 and err.strip() == f"dryml: error: no object 'nope' in {repo_dir}"


def test_check_and_reindex(repo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "repo", "check", str(repo_dir))
    assert status == 0 and "OK: the index matches the files" in out
    (repo_dir / "net1.dry").unlink()
    (repo_dir / "junk.dry").write_bytes(b"not a dry file")
    status, out, _ = _run(capsys, "repo", "check", str(repo_dir))
    assert status == 1
    assert "MISSING FILE  net1.dry" in out and "junk.dry" in out and "INCONSISTENT" in out
    status, out, _ = _run(capsys, "repo", "reindex", str(repo_dir))
    assert status == 0 and "indexed 4 object(s)" in out and "skipped junk.dry" in out
    status, out, _ = _run(capsys, "repo", "check", str(repo_dir), "--json")
    report = json.loads(out)
    assert status == 0 and report["ok"] and report["objects"] == 4


def test_missing_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _run(capsys, "repo", "ls", str(tmp_path / "nope"))
    assert status == 1 and "does not exist" in err


def test_read_only_commands_never_create_a_repository(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "notes.txt").write_text("an ordinary folder")
    for argv in (["repo", "ls"], ["repo", "show", "x"], ["repo", "check"], ["search", "ls"],
                 ["search", "show", "x"]):
        status, out, err = _run(capsys, *argv[:2], str(folder), *argv[2:])
        assert status == 1 and out == ""
        assert err == (f"dryml: error: {str(folder)!r} is not a dryml repository (it has no "
                       f".dryml-index.sqlite). To make it one, indexing the .dry files in it: "
                       f"dryml repo init {folder}\n")
        assert "create=True" not in err
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_missing_directory_says_how_to_make_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _run(capsys, "repo", "ls", str(tmp_path / "nope"))
    assert status == 1
    assert err == (f"dryml: error: no repository at {str(tmp_path / 'nope')!r}: it does not "
                   f"exist. To make a new one: dryml repo init {tmp_path / 'nope'}\n")
    assert not (tmp_path / "nope").exists()


def test_init_makes_a_repository_of_a_folder_of_dry_files(
        repo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    for name in ("net1.dry", "forest.dry"):
        (folder / name).write_bytes((repo_dir / name).read_bytes())
    status, out, _ = _run(capsys, "repo", "init", str(folder))
    assert status == 0
    assert out == (f"made {folder} a repository: indexed 2 object(s)\n"
                   f"list them with: dryml repo ls {folder}\n")
    status, out, _ = _run(capsys, "repo", "ls", str(folder))
    assert status == 0 and out.splitlines()[-1] == "2 object(s)"
    status, out, _ = _run(capsys, "repo", "init", str(folder))
    assert status == 0 and out == f"{folder} is already a repository (2 object(s))\n"


def test_show_accepts_an_unambiguous_prefix(
        repo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "repo", "show", str(repo_dir), "fo")
    assert status == 0 and "dry_id:     forest" in out
    status, out, err = _run(capsys, "repo", "show", str(repo_dir), "net")
    assert status == 1 and out == ""
    assert err == (f"dryml: error: 'net' is the start of more than one dry_id in {repo_dir}: "
                   "net0 (Net), net1 (Net), net2 (Net), net3 (Net); give more of the id\n")


def test_show_accepts_the_short_id_ls_prints(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = Repo(tmp_path / "r", create=True)
    net = Net(3)
    repo.add_object(net)
    status, out, _ = _run(capsys, "repo", "show", str(repo.directory), net.dry_id[:8])
    assert status == 0 and f"dry_id:     {net.dry_id}" in out


def test_order_by_an_unknown_key_names_the_keys_that_exist(
        repo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "repo", "ls", str(repo_dir), "--order-by", "accuracy")
    assert status == 1 and out == ""
    assert err == (f"dryml: error: cannot order by 'accuracy': no object in {repo_dir} has that "
                   "metadata key. Metadata keys: metrics.accuracy; or one of created, size, "
                   "dry_id, class, file\n")


def _ids(capsys: pytest.CaptureFixture[str], repo_dir: Path, *args: str) -> list[str]:
    status, out, err = _run(capsys, "repo", "ls", str(repo_dir), "--json", *args)
    assert status == 0, err
    return sorted(e["dry_id"] for e in json.loads(out))


def test_where_items_on_one_key_must_all_hold(
        repo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by review: the last item on a key replaced the others (4 objects, not 2)."""
    assert _ids(capsys, repo_dir, "--where", "metrics.accuracy>=0.6",
                "--where", "metrics.accuracy<=0.7") == ["net1", "net2"]
    assert _ids(capsys, repo_dir, "--where", "kwargs.lr>0", "--where", "kwargs.lr<0.3",
                "--where", "kwargs.lr!=0.1") == ["net2"]
    assert _ids(capsys, repo_dir, "--where", "args.0>=1", "--where", "args.0<3",
                "--class", "Net") == ["net1", "net2"]


def test_strict_comparisons_leave_out_an_equal_int_or_float(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by review: '>1.0' let through 1 (and 'args.0>1' a 1.0): the bound was left out
    with a JSON inequality, for which 1 and 1.0 differ."""
    repo = Repo(tmp_path / "r", create=True)
    for name, value in (("int1", 1), ("float1", 1.0), ("more", 1.5), ("less", 0.5)):
        repo.add_object(Net(value, dry_id=name), metadata={"score": value})
    for where in ("score>1.0", "score>1", "args.0>1", "args.0>1.0"):
        assert _ids(capsys, repo.directory, "--where", where) == ["more"], where
    for where in ("score<1.0", "args.0<1"):
        assert _ids(capsys, repo.directory, "--where", where) == ["less"], where
    assert _ids(capsys, repo.directory, "--where", "score>=1") == ["float1", "int1", "more"]


def test_a_value_may_hold_an_operator(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    """Found by review: 'note=a>b' was read as key 'note=a', operator '>', value 'b'."""
    repo = Repo(tmp_path / "r", create=True)
    repo.add_object(Forest(1, dry_id="arrow"), metadata={"note": "a>b", "eq": "x=y"})
    repo.add_object(Forest(2, dry_id="other"), metadata={"note": "c"})
    assert _ids(capsys, repo.directory, "--where", "note=a>b") == ["arrow"]
    assert _ids(capsys, repo.directory, "--where", "eq=x=y") == ["arrow"]
    assert _ids(capsys, repo.directory, "--where", "note!=a>b") == ["other"]


def test_a_negative_limit_is_refused(repo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by review: --limit -1 (and Repo.get(limit=-1)) silently dropped the last rows."""
    with pytest.raises(SystemExit) as exit_info:
        main(["repo", "ls", str(repo_dir), "--limit", "-1"])
    assert exit_info.value.code == 2
    assert "expected a whole number >= 0, got '-1'" in capsys.readouterr().err
    repo = Repo(repo_dir)
    for call in (repo.get, repo.ids, repo.entries):
        with pytest.raises(RepoError, match="limit is a whole number >= 0"):
            call(limit=-1)
    assert len(repo.ids(limit=0)) == 0 and len(repo.ids(limit=2)) == 2


@pytest.mark.parametrize(("where", "message"), [
    ("n>=null", "Range needs lo, hi or both"),
    ("n>true", "Range bounds are numbers or strings"),
    ("n>=NaN", "cannot be NaN"),
])
def test_a_where_value_that_cannot_compare_is_an_error_line_not_a_traceback(
        repo_dir: Path, capsys: pytest.CaptureFixture[str], where: str, message: str) -> None:
    status, _, err = _run(capsys, "repo", "ls", str(repo_dir), "--where", where)
    assert status == 1
    assert err.startswith(f"dryml: error: --where {where!r}: ") and message in err
    assert "Traceback" not in err


def test_a_file_given_as_the_repository_is_named_as_a_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It was told to run 'dryml repo init FILE', which then failed with 'File exists'."""
    (tmp_path / "model.dry").write_bytes(b"x")
    status, _, err = _run(capsys, "repo", "ls", str(tmp_path / "model.dry"))
    assert status == 1 and "it is a file, not a directory" in err
    assert "dryml inspect FILE" in err and "repo init" not in err


@pytest.mark.parametrize("command", ["repo", "search"])
def test_a_command_without_its_action_lists_its_actions(
        capsys: pytest.CaptureFixture[str], command: str) -> None:
    status, _, err = _run(capsys, command)
    assert status == 2
    assert f"usage: dryml {command} [-h] ACTION" in err
    assert "ls" in err and "show" in err


def test_search_ls_says_when_there_are_no_searches(
        repo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "search", "ls", str(repo_dir))
    assert status == 0 and out.startswith(f"no searches in {repo_dir}")


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "are not JSON"),
    ("{}", "metrics and directions are missing"),
    # found by review: ranking took any direction but "maximize" for "minimize", so these
    # showed the worst trial as the best
    ('{"metrics": ["accuracy"], "directions": ["Maximize"]}', "'maximize' or 'minimize'"),
    ('{"metrics": ["accuracy"], "directions": []}', "each metric needs one direction"),
    ('{"metrics": [], "directions": []}', "each metric needs one direction"),
])
def test_damaged_search_settings_are_an_error_line(
        repo_dir: Path, capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    """Found by review: a damaged .dryml-search/NAME.json was a JSONDecodeError or KeyError
    traceback from 'dryml search ls' and 'dryml search show'."""
    (repo_dir / ".dryml-search").mkdir()
    (repo_dir / ".dryml-search" / "broken.json").write_text(content)
    for argv in (("search", "ls", str(repo_dir)), ("search", "show", str(repo_dir), "broken")):
        status, _, err = _run(capsys, *argv)
        assert status == 1 and err.startswith("dryml: error: the settings of search 'broken' ")
        assert message in err and "delete it to make the search anew" in err


class Pair(Object):
    def __init__(self, first: Any, second: int) -> None:
        self.first = first


def test_where_on_a_later_argument_keeps_objects_whose_earlier_one_cannot_be_imported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by review: `--where args.1=5` dropped objects whose args.0 was an Object or a
    class: the placeholder for args.0 decoded (imported) it, which the CLI cannot."""
    import subprocess
    import sys

    repo = Repo(tmp_path / "repo", create=True)
    repo.add_objects([Pair(Net(1), 5, dry_id="nested"), Pair(Net, 5, dry_id="cls"),
                      Pair(3, 5, dry_id="plain"), Pair(3, 6, dry_id="other")])
    # a fresh process that never imported this test module: the CLI's situation
    done = subprocess.run([sys.executable, "-m", "dryml.cli", "repo", "ls",
                           str(repo.directory), "--where", "args.1=5", "--json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(e["dry_id"] for e in json.loads(done.stdout)) == ["cls", "nested", "plain"]


def test_small_mistakes_get_one_line_errors_and_text_reads_as_written(
        repo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``repo init`` on a file said "File exists"; ``--where =3`` (no key) silently matched
    nothing; names and metadata in other scripts were shown as ``\\u00fc`` escapes."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    status, _, err = _run(capsys, "repo", "init", str(a_file))
    assert status != 0 and "it is a file, not a directory" in err
    for where in ("=3", "kwargs.=1", ">=0.5"):
        status, _, err = _run(capsys, "repo", "ls", str(repo_dir), "--where", where)
        assert status != 0 and "the key before" in err and "is missing" in err, where
    repo = Repo(repo_dir)
    repo.add_object(Net(1, dry_id="über"), metadata={"note": "naïve"})
    repo.close()
    status, out, _ = _run(capsys, "repo", "ls", str(repo_dir), "--where", "note=naïve")
    assert status == 0 and "über" in out and '"naïve"' in out and "\\u00" not in out
    status, out, _ = _run(capsys, "repo", "show", str(repo_dir), "über")
    assert status == 0 and '"note": "naïve"' in out
