"""Trainables of several frameworks from one process: state comes back without the frameworks,
a Pipe crosses two frameworks, and metrics read Datasets of any framework."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

SCRIPT = textwrap.dedent('''
    import io, json, sys
    import numpy as np
    from dryml import load_object, metrics, save_object
    from dryml.data import NumpyDataset
    from dryml.models import Pipe, TrainSpec
    from dryml_sklearn.models import Estimator, SklearnTrainable
    from dryml_tf import models as keras
    from dryml_torch import models as torch
    from dryml_xgboost.models import XGBoostTrainable

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600).astype(np.int64)
    centers = np.array([[0, 0, 0, 0], [4, 0, 4, 0], [0, 4, 0, 4]], dtype=np.float32)
    x = (rng.normal(size=(600, 4)) * 3 + 10 + centers[y] * 3).astype(np.float32)  # unscaled
    train = NumpyDataset((x[:450], y[:450]), supervised=True)
    test = NumpyDataset((x[450:], y[450:]), supervised=True)
    spec = TrainSpec(epochs=15, batch_size=32, seed=0)
    layers = [("Linear", {"in_features": 4, "out_features": 32}), ("ReLU", {}),
              ("Linear", {"in_features": 32, "out_features": 3})]
    models = {
        "pipe": Pipe(SklearnTrainable(Estimator("sklearn.preprocessing.StandardScaler"),
                                      task="transformer"),
                     torch.TorchTrainable(torch.Sequential(layers),
                                          torch.Optimizer("Adam", lr=1e-2), spec=spec)),
        "keras": keras.KerasTrainable(
            keras.Sequential([("Dense", {"units": 3, "activation": "softmax"})],
                             input_shape=(4,)),
            keras.Optimizer("Adam", learning_rate=1e-2),
            keras.Loss("SparseCategoricalCrossentropy"), spec),
        "xgboost": XGBoostTrainable(spec=TrainSpec(seed=0), n_estimators=20),
    }
    report = {}
    for name, model in models.items():
        model.train(train)                      # in a worker of the model's framework
        before = np.asarray(model.eval(test).peek()[0])
        buf = io.BytesIO()
        save_object(model, buf)                 # the trained state, not decoded here
        again = load_object(io.BytesIO(buf.getvalue()))
        after = np.asarray(again.eval(test).peek()[0])
        report[name] = {"accuracy": metrics.accuracy(again, test),
                        "identical": bool(np.array_equal(before, after)),
                        "trained": again.trained}
    report["imported"] = sorted(m for m in ("torch", "tensorflow", "keras", "sklearn",
                                            "xgboost") if m in sys.modules)
    print(json.dumps(report))
''')


def test_models_of_four_frameworks_train_and_reload_without_their_frameworks_here(
        tmp_path: Path) -> None:
    script = tmp_path / "frameworks.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "TQDM_DISABLE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # trained in workers, state back in this process, saved and loaded: no framework imported
    assert report.pop("imported") == []
    for name, result in report.items():
        assert result["trained"] and result["identical"], (name, result)
        assert result["accuracy"] > 0.9, (name, result)


def test_metrics_read_tf_and_torch_datasets_whole() -> None:
    import tensorflow as tf
    import torch

    from dryml import metrics
    from dryml.data import NumpyDataset
    from dryml.metrics import arrays

    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 203)
    probs = rng.dirichlet(np.ones(4), size=203)
    data = NumpyDataset((probs, y), supervised=True)
    expected = {"accuracy": arrays.accuracy(y, probs), "log_loss": arrays.log_loss(y, probs),
                "macro_f1": arrays.macro_f1(y, probs)}
    # an eval() output (predictions in place of x) from each framework, batched unevenly
    for converted in (data.tf(), data.torch(), data.unbatch().batch(10).tf(),
                      data.unbatch().batch(10).torch()):
        element = converted.peek()
        assert isinstance(element[0], (tf.Tensor, torch.Tensor))
        assert metrics.score(converted, metrics=list(expected)) == expected


def test_an_xgboost_estimator_inside_a_scikit_learn_object_is_refused_before_fitting() -> None:
    """A Pipeline (or a Bagging ensemble) of an XGBoost estimator trained "successfully" and
    could then never predict: skops wrote the XGBoost model as data the load refuses (found by
    review). Training now refuses it before fitting, saving one made by hand refuses it too,
    and both say what to do instead."""
    import io

    import pytest
    from sklearn.ensemble import BaggingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    from dryml import Object, save_object
    from dryml.data import NumpyDataset
    from dryml.errors import ConfigurationError, SerializationError
    from dryml.models import TrainSpec
    from dryml_sklearn.models import Estimator, SklearnTrainable

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    data = NumpyDataset((x, y), supervised=True)
    xgb = Estimator("xgboost.sklearn.XGBClassifier", n_estimators=5, max_depth=2)
    for estimator, where in (
            (Estimator("sklearn.pipeline.Pipeline", steps=[
                ("s", Estimator("sklearn.preprocessing.StandardScaler")), ("x", xgb)]),
             "steps[1][1] (xgboost.sklearn.XGBClassifier)"),
            (Estimator("sklearn.ensemble.BaggingClassifier", estimator=xgb, n_estimators=2),
             "estimator (xgboost.sklearn.XGBClassifier)")):
        model = SklearnTrainable(estimator, spec=TrainSpec(seed=0))
        with pytest.raises(ConfigurationError, match="holds an XGBoost estimator") as caught:
            model.train(data)
        assert where in str(caught.value) and "XGBoostTrainable" in str(caught.value)
        assert not model.trained

    class Holder(Object):
        def __init__(self) -> None:
            self.value: object = None

        def save_object_imp(self, store: object) -> None:
            store.put("value", self.value)  # type: ignore[attr-defined]

    for fitted in (make_pipeline(StandardScaler(), XGBClassifier(n_estimators=5)).fit(x, y),
                   BaggingClassifier(XGBClassifier(n_estimators=5), n_estimators=2).fit(x, y)):
        holder = Holder()
        holder.value = fitted
        with pytest.raises(SerializationError, match="holds an XGBoost model at"):
            save_object(holder, io.BytesIO())


def test_an_xgboost_model_as_a_constructor_argument_is_refused_at_once() -> None:
    """``Holder(XGBRegressor(...))`` saved (scikit-learn's argument codec took it, as a
    scikit-learn estimator) and could never be loaded: skops' data cannot hold an XGBoost
    model that dryml would let XGBoost read. It is refused when the object is made, saying
    what to do; a scikit-learn estimator holding one is refused too."""
    import pytest
    from sklearn.ensemble import BaggingRegressor
    from xgboost import XGBRegressor

    from dryml import Object
    from dryml.errors import ArgumentError

    class Holder(Object):
        def __init__(self, model: object) -> None:
            self.model = model

    for value, where in ((XGBRegressor(n_estimators=3), "the estimator"),
                         (BaggingRegressor(XGBRegressor(n_estimators=3)),
                          "estimator (xgboost.sklearn.XGBRegressor)")):
        with pytest.raises(ArgumentError, match="an XGBoost model cannot be a constructor "
                           "argument") as caught:
            Holder(value)
        assert where in str(caught.value) and "store.put" in str(caught.value)
