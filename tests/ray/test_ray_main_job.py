"""The main job (docs/examples/compare_frameworks.py --quick) with ``DRYML_EXECUTOR=ray`` on
the two-node cluster gives the leaderboard it gives on the local worker pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cluster import RAY_ENV, RayCluster

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "examples" / "compare_frameworks.py"
MODELS = {"sklearn linear", "sklearn random forest", "xgboost", "torch mlp", "keras mlp"}


def run_main_job(out: Path, **env: str) -> dict[str, dict[str, float]]:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--task", "classification", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, **RAY_ENV, "DRYML_PROGRESS": "off", **env})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in MODELS:
        assert f"finished {name}" in proc.stdout
    # the main process still imported no framework: the work ran in Ray actors
    line = next(x for x in proc.stdout.splitlines()
                if x.startswith("frameworks imported by the main"))
    assert "tensorflow" not in line and "torch" not in line, line
    board: dict[str, dict[str, float]] = json.loads(
        (out / "leaderboard-classification.json").read_text())
    return board


def test_the_main_job_on_ray_gives_the_local_pools_leaderboard(cluster: RayCluster,
                                                               tmp_path: Path) -> None:
    on_ray = run_main_job(tmp_path / "ray", DRYML_EXECUTOR="ray", RAY_ADDRESS=cluster.address)
    local = run_main_job(tmp_path / "local", DRYML_EXECUTOR="local")
    assert set(on_ray) == set(local) == MODELS
    assert list(on_ray) == list(local)  # the same ranking...
    for name, scores in local.items():  # ...and the same scores (seeded training)
        assert on_ray[name] == pytest.approx(scores, rel=1e-4, abs=1e-4), name
