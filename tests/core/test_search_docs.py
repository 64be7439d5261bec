"""The examples of docs/search.md run, as doctests (real workers, a real Repo)."""

from __future__ import annotations

import doctest
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_search_page_examples_run() -> None:
    result = doctest.testfile(str(DOCS / "search.md"), module_relative=False,
                              globs={"__name__": "docs"},
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 15
    assert result.failed == 0
