"""The model class a file names resolves only from a set decided before any import (issue 10).

``xgboost.testing`` unpickles joblib caches from the working directory when it is imported
(and writes files there): a file naming a class in it, or in any module not declared safe,
is refused with ``UntrustedClassError`` before anything is imported. Checked in a fresh
subprocess, in an empty working directory.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("xgboost")
    pytest.importorskip("sklearn")

import xgbfuzz

from dryml import save_object

HERE = Path(__file__).resolve().parent
NAMED = ["xgboost.testing:XGBRegressor", "xgboost.testing.data:XGBRegressor",
         "xgboost.testing.ranking:XGBRanker", "xgboost.dask:DaskXGBRegressor",
         "xgboost.spark:SparkXGBRegressor", "xgboost.callback:XGBRegressor",
         "xgboost:XGBRegressor", "json.tool:XGBRegressor", "os:system"]
CHILD = """
import json, os, sys
sys.path.insert(0, {here!r})
import xgbfuzz
from dryml import load_object
from dryml.errors import UntrustedClassError

report = {{"cases": {{}}}}
for name in sorted(os.listdir({folder!r})):
    before = set(sys.modules)
    try:
        held = load_object(os.path.join({folder!r}, name))
        outcome = "loaded " + type(held.model).__name__
    except UntrustedClassError as exc:
        outcome = "UntrustedClassError"
    except Exception as exc:
        outcome = f"{{type(exc).__name__}}: {{exc}}"
    new = sorted(m for m in set(sys.modules) - before
                 if m.startswith(("xgboost.testing", "xgboost.dask", "xgboost.spark",
                                  "json.tool", "pyspark", "dask")))
    report["cases"][name] = [outcome, new]
report["cwd"] = sorted(os.listdir("."))
print(json.dumps(report))
"""


def _file(path: str | None) -> bytes:
    import xgboost as xgb

    held = xgbfuzz.Held("regressor")
    x = xgbfuzz.inputs("regressor")
    held.model = xgb.XGBRegressor(n_estimators=2, max_depth=2).fit(x, x[:, 0])
    buf = io.BytesIO()
    save_object(held, buf)
    if path is None:
        return buf.getvalue()

    def rename(manifest: dict[str, Any]) -> None:
        xgbfuzz._entry(manifest)["class"] = path

    return xgbfuzz.with_manifest(buf.getvalue(), rename)


def test_a_file_naming_an_undeclared_module_is_refused_and_nothing_is_imported(
        tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "good.dry").write_bytes(_file(None))
    for i, path in enumerate(NAMED):
        (folder / f"named{i}.dry").write_bytes(_file(path))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    np.save(cwd / "planted.npy", np.zeros(1))  # what a downloaded folder might hold beside
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(here=str(HERE), folder=str(folder))],
        cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["cases"].pop("good.dry") == ["loaded XGBRegressor", []]
    assert report["cases"] == {f"named{i}.dry": ["UntrustedClassError", []]
                               for i in range(len(NAMED))}
    assert report["cwd"] == ["planted.npy"]  # nothing written where the loader ran
