"""The main job (docs/examples/compare_frameworks.py) in its reduced mode, end to end."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from backend_checks import import_file

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "examples" / "compare_frameworks.py"
MODELS = {"sklearn linear", "sklearn random forest", "xgboost", "torch mlp", "keras mlp"}


@pytest.mark.parametrize(("task", "metrics"), [("classification", ["accuracy", "macro_f1",
                                                                   "log_loss"]),
                                               ("regression", ["r2", "mse", "mae"])])
def test_main_job_quick(tmp_path: Path, task: str, metrics: list[str]) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--task", task, "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "TQDM_DISABLE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for name in MODELS:
        assert f"finished {name}" in out
    assert "in a fresh process: its" in out and "identical" in out
    png = tmp_path / f"metrics-{task}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    board = json.loads((tmp_path / f"leaderboard-{task}.json").read_text())
    assert set(board) == MODELS
    assert all(set(scores) == set(metrics) for scores in board.values())
    ranked = [scores[metrics[0]] for scores in board.values()]
    assert ranked == sorted(ranked, reverse=True)  # the leaderboard is sorted by its metric
    # the main process never imported TensorFlow or PyTorch: framework work ran in workers
    line = next(x for x in out.splitlines() if x.startswith("frameworks imported by the main"))
    assert "tensorflow" not in line and "torch" not in line, line
    # it says where its Repo is and how to look at this run's models in it; the command works
    repo = tmp_path / f"repo-{task}"
    assert f"repo: {repo} (1 run kept there; this one is run=" in out
    look = next(x for x in out.splitlines() if x.startswith("look at this run's models: "))
    command = look.removeprefix("look at this run's models: ")
    assert command.startswith(f"dryml repo ls {repo} --where run=")
    assert command.endswith(f"--order-by metrics.{metrics[0]} --desc")
    shown = subprocess.run([sys.executable, "-m", "dryml.cli", *shlex.split(command)[1:]],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.rstrip().endswith("5 object(s)")
    assert all(f'"name": "{name}"' in shown.stdout for name in MODELS)


def test_main_job_compares_on_equal_terms() -> None:
    """Every model holds out the same validation rows (one TrainSpec), and the regression
    data is standardized with the training rows' statistics alone."""
    import numpy as np

    job = import_file("compare_frameworks_under_test", SCRIPT)
    train, test, n_features = job.load_data("regression")
    x_train, y_train = (np.asarray(a, dtype=np.float64) for a in train.peek())
    x_test = np.asarray(test.peek()[0], dtype=np.float64)
    np.testing.assert_allclose(x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(axis=0), 1.0, atol=1e-5)
    np.testing.assert_allclose([y_train.mean(), y_train.std()], [0.0, 1.0], atol=1e-5)
    assert np.abs(x_test.mean(axis=0)).max() > 1e-3  # the test rows did not set the scale
    for task in ("classification", "regression"):
        models = job.define_models(task, n_features, quick=True)
        specs = {name: model.spec for name, model in models.items()}
        assert set(specs) == MODELS
        assert len({spec.dry_id for spec in specs.values()}) == 1, specs
