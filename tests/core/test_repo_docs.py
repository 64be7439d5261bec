"""docs/repo.md runs as a doctest and docs/examples/repo_tour.py runs."""

from __future__ import annotations

import doctest
import runpy
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_repo_page_examples_run() -> None:
    result = doctest.testfile(str(DOCS / "repo.md"), module_relative=False,
                              globs={"__name__": "docs_repo"},
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20
    assert result.failed == 0


def test_repo_tour_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(DOCS / "examples" / "repo_tour.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "60 runs" in out and "index matches the files: True" in out
