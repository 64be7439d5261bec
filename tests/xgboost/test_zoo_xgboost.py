"""XGBoost zoo (issue 11): every kind of model comes back exactly, in a fresh process.

XGBClassifier (binary with early stopping, multi-class), XGBRegressor (numeric and with
pandas categorical columns), XGBRanker and raw Boosters (gbtree, dart, gblinear,
categorical): saved here, loaded in a fresh interpreter that has imported only dryml (and the
test's Object class), predictions compared bit for bit. The same process reports what each
load imported: XGBoost (and what importing XGBoost itself pulls in), never torch or
TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("xgboost")
    pytest.importorskip("sklearn")

import xgbfuzz

from dryml import save_object

HERE = Path(__file__).resolve().parent
FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "sklearn", "xgboost")
CHILD = """
import json, os, sys
sys.path.insert(0, {here!r})
import dryml, xgbfuzz
import numpy as np
from dryml import load_object

FRAMEWORKS = {frameworks!r}
def frameworks():
    return {{m.split(".")[0] for m in sys.modules if m.split(".")[0] in FRAMEWORKS}}

report = {{"at_start": sorted(frameworks()), "cases": {{}}}}
for name in sorted(os.listdir({folder!r})):
    if not name.endswith(".dry"):
        continue
    before = frameworks()
    held = load_object(os.path.join({folder!r}, name))
    imported = sorted(frameworks() - before)
    np.save(os.path.join({folder!r}, name + ".out.npy"), xgbfuzz.predict(held))
    report["cases"][name] = {{"class": type(held.model).__name__, "imported": imported}}
print(json.dumps(report))
"""
XGBOOST_ITSELF = (f"import json, sys, xgboost; print(json.dumps(sorted({{m.split('.')[0] "
                  f"for m in sys.modules}} & set({FRAMEWORKS!r}))))")


def test_every_xgboost_model_kind_round_trips_bit_for_bit_in_a_fresh_process(
        tmp_path: Path) -> None:
    models = xgbfuzz.build_models()
    expected = {}
    for tag, model in models.items():
        held = xgbfuzz.Held(tag)
        held.model = model
        save_object(held, tmp_path / f"{tag}.dry")
        expected[tag] = (type(model).__name__, xgbfuzz.predict(held))
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(here=str(HERE), folder=str(tmp_path),
                                           frameworks=FRAMEWORKS)],
        capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    itself = subprocess.run([sys.executable, "-c", XGBOOST_ITSELF], capture_output=True,
                            text=True, timeout=300, check=True)
    with_xgboost = set(json.loads(itself.stdout))  # xgboost imports sklearn when present

    assert report["at_start"] == []
    assert sorted(report["cases"]) == sorted(f"{tag}.dry" for tag in models)
    for tag, (cls, predictions) in expected.items():
        case = report["cases"][f"{tag}.dry"]
        assert case["class"] == cls, tag
        loaded = np.load(tmp_path / f"{tag}.dry.out.npy")
        assert loaded.dtype == predictions.dtype and loaded.shape == predictions.shape, tag
        assert loaded.tobytes() == predictions.tobytes(), tag  # bit for bit
        assert not set(case["imported"]) & {"torch", "tensorflow", "keras", "jax"}, tag
        assert set(case["imported"]) <= with_xgboost, tag
    # the first load imports XGBoost and only what importing XGBoost itself imports
    first = report["cases"][min(report["cases"])]
    assert set(first["imported"]) == with_xgboost, first
