"""The examples in the core docs run, as doctests."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("page", ["objects.md", "trainables.md"])
def test_doc_page_examples_run(page: str) -> None:
    result = doctest.testfile(str(DOCS / page), module_relative=False,
                              globs={"__name__": "docs"},
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10
    assert result.failed == 0
