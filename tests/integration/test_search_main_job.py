"""The main job's ``--search N``: one search across the four frameworks, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_main_job_search_runs_a_search_across_frameworks(tmp_path: Path) -> None:
    for name in ("dryml_tf", "dryml_torch", "dryml_sklearn", "dryml_xgboost", "matplotlib"):
        if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
            pytest.importorskip(name)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "examples" / "compare_frameworks.py"),
         "--search", "4", "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "framework" in proc.stdout and "test accuracy" in proc.stdout
    assert (tmp_path / "search-history-classification.png").read_bytes()[:4] == b"\x89PNG"
    repo = next(tmp_path.glob("search-classification-*"))
    shown = subprocess.run([sys.executable, "-m", "dryml.cli", "search", "show", str(repo),
                            "frameworks"], capture_output=True, text=True, check=True)
    assert shown.stdout.count("complete") >= 4
