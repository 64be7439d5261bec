"""Every kind of Dataset into every backend: ``train``, ``eval`` and ``dryml.metrics`` take
numpy, generator, tf.data and torch Datasets, batched or not, indexed or not, from the main
process (the data crosses to the model's worker) and from inside a compute context (the data
is built there and used in place).

Each case trains a fresh copy of one tiny model with an explicit seed, so every kind must give
exactly the predictions of the reference trained on in-memory numpy: the data arrived whole and
in order. Four pretend CPUs keep one worker per backend warm for the whole file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from backend_checks import require_backend

import dryml.context as ctx
from dryml import metrics
from dryml.context import Resource, compute_context
from dryml.data import Dataset, NumpyDataset
from dryml.models import TrainSpec

N, FEATURES, BATCH = 50, 3, 16  # 50 = 3 * 16 + 2: the last batch is smaller
BACKENDS = ("sklearn", "xgboost", "torch", "tf")
SOURCES = ("numpy", "generator", "tf", "torch")
# ``source-batching-index``: every native kind, and conversions (numpy -> tf.data through
# from_tensor_slices, tf.data -> torch through DLPack) in two variants each.
KINDS = [f"{source}-{batching}-{index}" for source in SOURCES
         for batching in ("batched", "unbatched") for index in ("indexed", "plain")]
KINDS += ["numpy.tf-batched-plain", "numpy.tf-unbatched-indexed", "tf.torch-batched-indexed",
          "tf.torch-unbatched-plain"]


class FourCpus:
    """Room for one warm worker per backend, so no case waits for a worker to start again."""

    def resources(self) -> list[Resource]:
        return [Resource("cpu", i) for i in range(4)]


@pytest.fixture(scope="module", autouse=True)
def warm_workers() -> Iterator[None]:
    ctx.configure(providers=[FourCpus()], max_workers=4)
    yield
    ctx.configure()


def _need_frameworks() -> None:
    # "torch.utils.data" is imported by dryml_torch; tests/torch must not pass for torch.
    require_backend("tf")
    require_backend("torch")


def data() -> tuple[np.ndarray, np.ndarray]:
    """Two separable classes, the same in every process."""
    rng = np.random.default_rng(14)
    y = rng.integers(0, 2, N).astype(np.int64)
    x = (rng.normal(size=(N, FEATURES)) + 2.0 * y[:, None]).astype(np.float32)
    return x, y


def make(kind: str) -> Dataset:
    """The Dataset ``kind`` (``source-batching-index``) over :func:`data`."""
    source, batching, index = kind.split("-")
    batched = batching == "batched"
    x, y = data()
    if source == "numpy":
        ds: Dataset = NumpyDataset((x, y), supervised=True, batch_size=BATCH if batched else None)
        ds = ds if batched else ds.unbatch()
    elif source == "generator":
        if batched:
            ds = NumpyDataset(lambda: ((x[i:i + BATCH], y[i:i + BATCH])
                                       for i in range(0, N, BATCH)),
                              supervised=True, batch_size=BATCH)
        else:
            ds = NumpyDataset(lambda: zip(x, y, strict=True), supervised=True)
    elif source in ("tf", "tf.torch"):
        import tensorflow as tf

        from dryml.data.tf import TFDataset

        tf_ds = tf.data.Dataset.from_tensor_slices((x, y))
        ds = TFDataset(tf_ds.batch(BATCH) if batched else tf_ds, supervised=True,
                       batch_size=BATCH if batched else None)
        ds = ds.torch() if source == "tf.torch" else ds
    elif source == "torch":
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        from dryml.data.torch import TorchDataset

        tensors = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        ds = TorchDataset(DataLoader(tensors, batch_size=BATCH) if batched else tensors,
                          supervised=True)
    else:  # numpy.tf: the from_tensor_slices conversion
        ds = NumpyDataset((x, y), supervised=True, batch_size=BATCH if batched else None)
        ds = (ds if batched else ds.unbatch()).tf()
    return ds.as_indexed() if index == "indexed" else ds


def model(backend: str) -> Any:
    """A fresh copy of one tiny model of ``backend`` with an explicit seed."""
    if backend == "sklearn":
        from dryml_sklearn.models import Estimator, SklearnTrainable

        return SklearnTrainable(Estimator("sklearn.linear_model.LogisticRegression"))
    if backend == "xgboost":
        from dryml_xgboost.models import XGBoostTrainable

        return XGBoostTrainable(spec=TrainSpec(seed=0), n_estimators=4, max_depth=2)
    spec = TrainSpec(epochs=1, batch_size=BATCH, seed=0)
    if backend == "torch":
        from dryml_torch import models as torch_models

        net = torch_models.Sequential([("Linear", {"in_features": FEATURES, "out_features": 2})])
        return torch_models.TorchTrainable(net, torch_models.Optimizer("Adam", lr=0.05),
                                           spec=spec)
    from dryml_tf import models as keras

    net = keras.Sequential([("Dense", {"units": 2, "activation": "softmax"})],
                           input_shape=(FEATURES,))
    return keras.KerasTrainable(net, keras.Optimizer("Adam", learning_rate=0.05),
                                keras.Loss("SparseCategoricalCrossentropy"), spec)


def columns(ds: Dataset) -> dict[str, np.ndarray]:
    """Every example of an eval output (or of a kind) as arrays: ``x``, ``y`` and ``i``."""
    rows = ds.in_memory().unbatch()
    out: dict[str, list[Any]] = {"x": [], "y": [], "i": []}
    for element in rows:
        if ds.indexed:
            out["i"].append(element[0])
            element = element[1]
        out["x"].append(np.asarray(element[0]))
        out["y"].append(element[1])
    return {k: np.asarray(v) for k, v in out.items()}


def run_kind(backend: str, kind: str) -> dict[str, Any]:
    """Train a fresh model on ``kind``, evaluate and score it on ``kind``: what a user sees."""
    ds = make(kind)
    trainable = model(backend)
    trainable.train(ds, ds)  # the same kind as validation data
    out = trainable.eval(ds)
    cols = columns(out)
    return {
        "trained": trainable.trained,
        "flags": (out.supervised, out.indexed, out.batch_size),
        "predictions": cols["x"], "y": cols["y"], "i": cols["i"],
        "accuracy": metrics.accuracy(trainable, ds),
        "accuracy_of_eval": metrics.accuracy(out),
        "scores_of_predictions": metrics.score(cols["x"], ds, ["accuracy", "log_loss"]),
    }


def run_all_kinds_here(backend: str, passed: Dataset) -> dict[str, dict[str, Any]]:
    """Inside a context of ``backend``: every kind built and used here, plus ``passed``, a
    Dataset that arrived as an argument of the call."""
    from dryml.context import context_check

    context_check({backend: {}})
    report = {kind: run_kind(backend, kind) for kind in KINDS}
    trainable = model(backend)
    trainable.train(passed)
    report["passed"] = {"predictions": columns(trainable.eval(passed))["x"]}
    return report


run_all_kinds_in_context = compute_context()(run_all_kinds_here)

_REFERENCES: dict[str, dict[str, Any]] = {}


def reference(backend: str) -> dict[str, Any]:
    """The reference: one model trained and evaluated on in-memory numpy (shared by the cases)."""
    if backend not in _REFERENCES:
        x, y = data()
        ds = NumpyDataset((x, y), supervised=True, batch_size=BATCH)
        trainable = model(backend)
        trainable.train(ds, ds)
        predictions = columns(trainable.eval(ds))["x"]
        _REFERENCES[backend] = {"predictions": predictions,
                                "accuracy": metrics.accuracy(predictions, ds)}
    return _REFERENCES[backend]


def check_case(result: dict[str, Any], kind: str, ref: dict[str, Any]) -> None:
    """What a user must see for ``kind``: every example, in order, predicted as the reference."""
    _, y = data()
    _, batching, index = kind.split("-")
    assert result["trained"]
    assert result["flags"] == (True, index == "indexed",
                               BATCH if batching == "batched" else None)
    assert result["predictions"].shape == (N, 2)
    np.testing.assert_allclose(result["predictions"], ref["predictions"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result["y"], y)
    if index == "indexed":
        np.testing.assert_array_equal(result["i"], np.arange(N))
    for key in ("accuracy", "accuracy_of_eval"):
        assert result[key] == pytest.approx(ref["accuracy"]), key
    assert result["scores_of_predictions"]["accuracy"] == pytest.approx(ref["accuracy"])
    assert np.isfinite(result["scores_of_predictions"]["log_loss"])


def test_data_sent_to_a_worker_needs_no_framework_there() -> None:
    """A tf or torch Dataset given to an sklearn model from the main process reaches its
    worker as numpy: the worker imports neither TensorFlow nor PyTorch."""
    _need_frameworks()
    require_backend("sklearn")
    trainable = model("sklearn")
    trainable.train(make("tf-batched-indexed"))
    trainable.eval(make("torch-unbatched-plain"))
    assert framework_modules_in_worker("sklearn") == []


@compute_context()
def _frameworks_here() -> list[str]:
    import sys

    return sorted(m for m in ("tensorflow", "torch") if m in sys.modules)


def framework_modules_in_worker(backend: str) -> list[str]:
    """The frameworks the warm worker for ``backend`` has imported."""
    found: list[str] = _frameworks_here(call_context_reqs={backend: {}})
    return found


# From the main process every kind reaches the worker as in-memory numpy (Dataset.in_memory),
# whatever the backend; Keras (1-2 s of tracing per fresh model) takes one kind per source
# here and every kind in the in-context test below, where it reads them itself.
KERAS_MAIN_KINDS = ["tf-batched-indexed", "torch-unbatched-plain", "generator-batched-plain",
                    "numpy-unbatched-indexed", "tf.torch-unbatched-plain"]
MAIN_CASES = [(b, k) for b in BACKENDS for k in (KERAS_MAIN_KINDS if b == "tf" else KINDS)]


# Backend by backend, so that each backend's worker stays warm across its cases.
@pytest.mark.parametrize(("backend", "kind"), MAIN_CASES)
def test_every_kind_from_the_main_process(backend: str, kind: str) -> None:
    _need_frameworks()
    require_backend(backend)
    check_case(run_kind(backend, kind), kind, reference(backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_kind_inside_a_context(backend: str) -> None:
    _need_frameworks()
    require_backend(backend)
    passed = make("tf-batched-plain")  # a tf.data pipeline as an argument of the call
    report = run_all_kinds_in_context(backend, passed, call_context_reqs={backend: {}})
    ref = reference(backend)
    for kind in KINDS:
        check_case(report[kind], kind, ref)
    np.testing.assert_allclose(report["passed"]["predictions"], ref["predictions"],
                               rtol=1e-5, atol=1e-6)
