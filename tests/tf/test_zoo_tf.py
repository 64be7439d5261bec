"""The Keras zoo (issue 11): Keras' own catalogue of stateful preprocessing layers and a few
applications, saved here and loaded in ONE fresh interpreter that has imported only dryml;
outputs compared bit for bit (see keras_zoo.py).

With ``DRYML_KERAS_ZOO_COMPARE=1`` the same cases are also saved with Keras' native
``.keras`` format and with pickle and loaded in that interpreter, for the counts beside
dryml's (a minute more on 2 cores, so CI runs dryml's loads only).

Keras is bit-stable here: a model's outputs are the same bytes in the saving process and in a
fresh one (the native ``.keras`` loads show it for every case), so the comparison is with the
original model's output, not with a ``copy.deepcopy``.

``import keras`` imports scikit-learn by itself when it is installed (its sklearn wrappers),
so a Keras load brings scikit-learn in with Keras; never torch, XGBoost or JAX.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dryml import save_object

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("tensorflow")

import keras_zoo  # noqa: E402 - tests/tf is on sys.path (pytest's prepend import mode)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
FRAMEWORKS = {"tensorflow", "keras"}
COMPARE = bool(os.environ.get("DRYML_KERAS_ZOO_COMPARE"))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case built and saved three ways here, then loaded in one fresh interpreter."""
    folder = tmp_path_factory.mktemp("zoo")
    expected, kinds, pickle_saved = {}, {}, {}
    for name, (build, kind) in keras_zoo.cases().items():
        model = build()
        expected[name], kinds[name] = keras_zoo.run(model, kind), kind
        holder = keras_zoo.Holder(name)
        holder.model = model
        save_object(holder, folder / f"{name}.dry")
        if not COMPARE:
            continue
        model.save(folder / f"{name}.keras")
        try:
            (folder / f"{name}.pkl").write_bytes(pickle.dumps(model))
            pickle_saved[name] = True
        except Exception as exc:  # noqa: BLE001 - a count: whatever pickle cannot save
            pickle_saved[name] = f"{type(exc).__name__}: {exc}"
    spec = {"path": [str(HERE)], "cases": kinds, "dir": str(folder), "others": COMPARE}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", keras_zoo.CHILD, json.dumps(spec)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    result_file = folder / "result.json"
    assert result_file.exists(), f"the loading process died:\n{proc.stderr[-4000:]}"
    result = json.loads(result_file.read_text())
    return {"expected": expected, "result": result, "folder": folder,
            "pickle_saved": pickle_saved}


def _outcome(zoo: dict[str, Any], how: str, name: str) -> str:
    """'ok', or why the case did not come back identical."""
    got = zoo["result"][how][name]
    if not got["ok"]:
        return got["error"]
    out = np.load(zoo["folder"] / f"{name}.{how}.npy", allow_pickle=False)
    want = zoo["expected"][name]
    if out.dtype != want.dtype or out.shape != want.shape:
        return f"output {out.dtype}{out.shape} instead of {want.dtype}{want.shape}"
    if out.tobytes() != want.tobytes():
        return f"predictions differ (max {np.max(np.abs(out - want))})"
    return "ok"


def test_the_zoo_covers_every_stateful_preprocessing_layer_keras_has() -> None:
    found = keras_zoo.stateful_preprocessing_layers()
    assert {"Normalization", "StringLookup", "IntegerLookup", "TextVectorization"} <= set(found)
    missing = set(found) - set(keras_zoo.INPUT_KINDS)
    assert not missing, f"new stateful preprocessing layers without a zoo case: {missing}"
    names = keras_zoo.cases()
    assert all(any(case.startswith(layer) for case in names) for layer in found)


def test_every_zoo_case_comes_back_bit_for_bit_in_a_fresh_process(zoo: dict[str, Any]) -> None:
    outcomes = {name: _outcome(zoo, "dryml", name) for name in zoo["expected"]}
    failed = {name: why for name, why in outcomes.items() if why != "ok"}
    assert not failed, f"{len(failed)} of {len(outcomes)} cases differ: {failed}"


def test_adapted_normalization_predicts_identically_after_a_fresh_process_load(
        zoo: dict[str, Any]) -> None:
    # the layer alone, inside two levels of nested models, and inside EfficientNetB0
    for name in ("Normalization", "Normalization-nested-models", "EfficientNetB0"):
        assert _outcome(zoo, "dryml", name) == "ok", name


def test_adapted_vocabularies_work_after_a_fresh_process_load(zoo: dict[str, Any]) -> None:
    for layer in ("StringLookup", "IntegerLookup", "TextVectorization"):
        for mode in ("int", "tf_idf"):
            assert _outcome(zoo, "dryml", f"{layer}-{mode}") == "ok", (layer, mode)


def test_each_load_imports_only_tensorflow_and_keras(zoo: dict[str, Any]) -> None:
    result = zoo["result"]
    # what `import keras` brings in by itself (scikit-learn, when installed) comes with Keras
    allowed = FRAMEWORKS | ({"sklearn"} if result["keras_imports_sklearn"] else set())
    assert not set(result["before"]) & allowed, "the loading process imported a framework"
    first = next(iter(result["dryml"].values()))
    assert FRAMEWORKS <= set(first["imported"]) <= allowed
    for name, got in result["dryml"].items():
        assert set(got["imported"]) <= allowed, (name, got["imported"])
    assert FRAMEWORKS <= set(result["after_dryml"]) <= allowed
    assert not {"torch", "xgboost", "jax"} & set(result["after_dryml"])


@pytest.mark.skipif(not COMPARE, reason="set DRYML_KERAS_ZOO_COMPARE=1 for the counts")
def test_dryml_loads_every_case_keras_native_format_and_pickle_load(
        zoo: dict[str, Any]) -> None:
    names = list(zoo["expected"])
    counts = {}
    for how in ("dryml", "keras", "pickle"):
        counts[how] = [n for n in names if (how != "pickle" or zoo["pickle_saved"][n] is True)
                       and _outcome(zoo, how, n) == "ok"]
    print(f"\nKeras zoo, {len(names)} cases identical after a fresh-process load: "
          + ", ".join(f"{how} {len(ok)}" for how, ok in counts.items()))
    assert set(counts["keras"]) | set(counts["pickle"]) <= set(counts["dryml"])
