"""What a user sees while models of several frameworks train at once: one display drawn by the
caller, with the same line for every backend (``<class> <task> <id> · <framework>``), the
count, the metrics, and a status line when early stopping ends a training; plain lines in a
pipe, a live display on a terminal. Real scikit-learn and XGBoost workers, started by
``model.train`` in the caller."""

from __future__ import annotations

import importlib
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from progress_terminal import run_in_pipe, run_in_pty, screens  # noqa: E402


def _need(*names: str) -> None:
    for name in names:
        if os.environ.get("DRYML_REQUIRE_BACKENDS"):
            importlib.import_module(name)
        else:
            pytest.importorskip(name)


_need("dryml_sklearn", "sklearn", "dryml_xgboost", "xgboost")

SCRIPT = textwrap.dedent('''
    import concurrent.futures as cf

    import numpy as np
    from sklearn.datasets import load_digits

    from dryml import progress
    from dryml.data import NumpyDataset
    from dryml.models import EarlyStopping, TrainSpec
    from dryml_sklearn.models import Estimator, SklearnTrainable
    from dryml_xgboost.models import XGBoostTrainable

    x, y = load_digits(return_X_y=True)
    data = NumpyDataset((x.astype(np.float32), y), supervised=True)
    spec = TrainSpec(validation_split=0.2, early_stopping=EarlyStopping(patience=2), seed=0)
    models = [
        SklearnTrainable(Estimator("sklearn.ensemble.RandomForestClassifier", n_estimators=50,
                                   random_state=0), task="classifier", spec=spec),
        XGBoostTrainable(task="classifier", spec=spec, n_estimators=300, max_depth=3,
                         learning_rate=0.8),
    ]
    for model in models:
        print("label:", progress.label_of(model), flush=True)
    with cf.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda m: m.train(data), models))  # each in its framework's worker
    progress.status("[dryml] finished both models")
''')


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "train_frameworks.py"
    path.write_text(SCRIPT, encoding="utf-8")
    return path


def _labels(out: str) -> tuple[str, str]:
    found = re.findall(r"^label: (.+?)\r?$", out, re.M)
    assert len(found) == 2 and found[0].startswith("SklearnTrainable classifier "), found
    assert found[1].startswith("XGBoostTrainable classifier "), found
    return found[0], found[1]


def test_a_pipe_gets_the_same_plain_lines_for_every_framework(script: Path) -> None:
    out = run_in_pipe(script)
    assert "\r" not in out and "\x1b" not in out
    forest, trees = _labels(out)
    lines = out.splitlines()
    forest_lines = [line for line in lines if line.startswith(f"{forest} · sklearn: ")]
    assert forest_lines[0] == f"{forest} · sklearn: started (1 fit)"
    assert re.fullmatch(rf"{forest} · sklearn: finished at fit 1/1 in \d+:\d\d, "
                        r"val_accuracy=[\d.]+ .*", forest_lines[-1]), forest_lines
    assert len(forest_lines) == 2  # drawn once, by the caller
    tree_lines = [line for line in lines if line.startswith(f"{trees} · xgboost: ")]
    assert tree_lines[0] == f"{trees} · xgboost: started (300 rounds)"
    assert re.fullmatch(rf"{trees} · xgboost: early stopping after round (\d+): best "
                        r"val_loss=[\d.e-]+ at round \d+", tree_lines[-2]), tree_lines
    assert re.fullmatch(rf"{trees} · xgboost: finished at round \d+/300 in \d+:\d\d, "
                        r"mlogloss=[\d.e-]+ val_mlogloss=[\d.e-]+", tree_lines[-1]), tree_lines
    assert lines[-1] == "[dryml] finished both models"


def test_a_terminal_gets_one_display_for_every_framework(script: Path) -> None:
    raw = run_in_pty(script)
    forest, trees = _labels(raw)
    drawn = {forest: False, trees: False}
    screen: list[str] = []
    for screen in screens(raw):
        for line in screen:
            for label in drawn:  # a live line: label, framework, bar, count
                if re.match(rf"{re.escape(label)} · (sklearn|xgboost) ━+  (fit|round) ", line):
                    drawn[label] = True
    assert all(drawn.values()), drawn
    final = [line for line in screen if line]
    assert final[-1] == "[dryml] finished both models"
    assert not any("━━" in line for line in final)  # the display is gone at the end
    assert any(line.startswith(f"{forest} · sklearn: finished at fit 1/1") for line in final)
    assert any(line.startswith(f"{trees} · xgboost: early stopping after round")
               for line in final)
    assert any(line.startswith(f"{trees} · xgboost: finished at round") for line in final)
