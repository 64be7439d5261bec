"""The doc pages whose examples need the framework backends run as written, in order, per
page (the harness and the rules: ``tests/core/test_docs_blocks.py``)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from backend_checks import import_file

CORE_TEST = Path(__file__).resolve().parents[1] / "core" / "test_docs_blocks.py"


def _need(*names: str) -> None:
    """Import ``names`` in order (skip when missing, unless CI requires the backends)."""
    for name in names:
        if os.environ.get("DRYML_REQUIRE_BACKENDS"):
            importlib.import_module(name)
        else:
            pytest.importorskip(name)


# "torch.utils.data" first: tests/torch is importable as a namespace package "torch".
_need("dryml_torch", "torch.utils.data", "dryml_tf", "tensorflow", "dryml_sklearn", "sklearn",
      "dryml_xgboost", "xgboost")


HARNESS = import_file("docs_blocks_harness", CORE_TEST)


@pytest.mark.parametrize("name", sorted(HARNESS.BACKEND_PAGES))
def test_python_blocks_of_the_page_run_as_written(name: str, tmp_path: Path) -> None:
    page = HARNESS.ROOT / "docs" / name
    assert page.is_file(), f"BACKEND_PAGES names {name}, which is not in docs/"
    failures = HARNESS.run_page(page, tmp_path)
    assert not failures, "\n".join(failures)
