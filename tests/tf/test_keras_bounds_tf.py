"""A crafted Keras config cannot make a load allocate far beyond the weights the file stores.

The files are real ``.dry`` files written by dryml from a real model, whose Keras config was
edited on the way out (a checksummed member, so the edit cannot be made afterwards); each
hostile load runs in a fresh interpreter, whose peak memory is the only one that tells
whether the load allocated what the config asked for.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest

from dryml import load_object, save_object
from dryml.errors import FormatError

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("tensorflow")

import keras  # noqa: E402
import keras_zoo  # noqa: E402 - tests/tf is on sys.path (pytest's prepend import mode)

HERE = Path(__file__).parent
#: What the hostile configs below would make Keras allocate: 1.7 GB and 3.2 GB.
WIDE_UNITS = 25_000_000
IOU_CLASSES = 20_000
CHILD = """
import json, os, resource, sys
sys.path.insert(0, sys.argv[1])
import keras, keras_zoo
from dryml import load_object
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_object(sys.argv[2], trust=["keras_zoo"])
    error = None
except Exception as exc:
    error = [type(exc).__name__, str(exc)]
with keras.StatelessScope():  # what a later scope does with variables left deferred
    pass
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"error": error, "grown_mib": grown / 1024}))
"""


def _model(compiled_metrics: list[Any] | None = None) -> Any:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16),
                              keras.layers.Dense(2)])
    if compiled_metrics is not None:
        model.compile(optimizer="adam", loss="mse", metrics=compiled_metrics)
    return model


def _save_edited(model: Any, path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """``model`` saved by dryml with its Keras config passed through ``edit`` first."""
    real = keras.saving.serialize_keras_object

    def edited(value: Any) -> Any:
        config = real(value)
        edit(config)
        return config

    holder = keras_zoo.Holder()
    holder.model = model
    with mock.patch.object(keras.saving, "serialize_keras_object", edited):
        save_object(holder, path)
    return path


def _load_fresh(path: Path) -> dict[str, Any]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(HERE), str(path)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _wide_last_layer(config: dict[str, Any]) -> None:
    config["config"]["layers"][-1]["config"]["units"] = WIDE_UNITS


def _huge_iou_metric() -> Callable[[dict[str, Any]], None]:
    metric = keras.saving.serialize_keras_object(keras.metrics.MeanIoU(num_classes=2))
    metric["config"]["num_classes"] = IOU_CLASSES

    def edit(config: dict[str, Any]) -> None:
        config["compile_config"]["metrics"] = [metric]

    return edit


def test_a_layer_far_wider_than_its_stored_weights_is_refused_before_allocating(
        tmp_path: Path) -> None:
    path = _save_edited(_model(), tmp_path / "wide.dry", _wide_last_layer)
    assert path.stat().st_size < 8192
    result = _load_fresh(path)
    assert result["error"] is not None
    kind, message = result["error"]
    assert kind == "FormatError"
    assert "asks for 1,700,000,320 bytes of variables" in message
    assert "refused before allocating" in message
    # the real build would take 1.7 GB (and its initializers several more): nothing near
    assert result["grown_mib"] < 200, result


def test_a_compiled_metric_far_larger_than_the_file_is_refused_before_allocating(
        tmp_path: Path) -> None:
    path = _save_edited(_model(["mae"]), tmp_path / "iou.dry", _huge_iou_metric())
    result = _load_fresh(path)
    assert result["error"] is not None
    kind, message = result["error"]
    assert kind == "FormatError"
    assert "compile config" in message and "refused before allocating" in message
    assert result["grown_mib"] < 200, result


def test_the_refusal_names_the_model_in_process_too(tmp_path: Path) -> None:
    path = _save_edited(_model(), tmp_path / "wide.dry", _wide_last_layer)
    with pytest.raises(FormatError, match="the Keras model: its config asks for"):
        load_object(path, trust=["keras_zoo"])


def test_a_compiled_model_with_metrics_holding_variables_loads_compiled(
        tmp_path: Path) -> None:
    model = _model(["mae", keras.metrics.MeanIoU(num_classes=3, name="iou")])
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    model.fit(x, np.zeros((16, 2), "float32"), epochs=1, verbose=0)
    holder = keras_zoo.Holder()
    holder.model = model
    buf = io.BytesIO()
    save_object(holder, buf)
    buf.seek(0)
    loaded = load_object(buf).model
    assert loaded.compiled
    assert type(loaded.optimizer) is keras.optimizers.Adam
    assert int(loaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy())
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    logs = loaded.evaluate(x, np.zeros((16, 2), "float32"), verbose=0, return_dict=True)
    assert {"loss", "mae", "iou"} <= set(logs)


def _stateful() -> Any:
    model = keras.Sequential([keras.Input(batch_size=4, shape=(3, 2)),
                              keras.layers.LSTM(5, stateful=True), keras.layers.Dense(1)])
    model.predict(np.zeros((4, 3, 2), "float32"), verbose=0)
    return model


def test_a_stateful_rnn_still_loads(tmp_path: Path) -> None:
    """Its states are made from zeros of the batch size, which a deferring scope refuses:
    the weights are bounded on a stateless copy, then the model is rebuilt as it is."""
    model = _stateful()
    path = _save_edited(model, tmp_path / "rnn.dry", lambda config: None)
    loaded = load_object(path, trust=["keras_zoo"]).model
    assert loaded.layers[0].stateful
    for want, got in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(want), np.asarray(got))


def _layer_configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [layer["config"] for layer in config["config"]["layers"]]


def test_a_stateful_rnn_with_an_endless_batch_or_width_is_refused(tmp_path: Path) -> None:
    def huge_batch(config: dict[str, Any]) -> None:
        for layer in _layer_configs(config):
            if "batch_shape" in layer:
                layer["batch_shape"] = [10**9, *layer["batch_shape"][1:]]
        build = config.get("build_config") or {}
        if build.get("input_shape"):
            build["input_shape"] = [10**9, *build["input_shape"][1:]]

    def wide(config: dict[str, Any]) -> None:
        _layer_configs(config)[-1]["units"] = WIDE_UNITS

    with pytest.raises(FormatError, match="batch size 1,000,000,000 is over 65,536"):
        load_object(_save_edited(_stateful(), tmp_path / "b.dry", huge_batch),
                    trust=["keras_zoo"])
    with pytest.raises(FormatError, match="its config asks for"):
        load_object(_save_edited(_stateful(), tmp_path / "w.dry", wide), trust=["keras_zoo"])
