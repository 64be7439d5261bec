"""``dryml repo ls|show|check|reindex``: what a user sees on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dryml import Object
from dryml.cli import main
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


def test_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _run(capsys, "repo", "ls", str(tmp_path / "nope"))
    assert status == 1 and "does not exist" in err
