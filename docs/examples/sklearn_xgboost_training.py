"""Train a scikit-learn Pipeline and an XGBoost model from components on the digits data set;
score both with dryml.metrics, save, reload, and check the predictions are identical.

Run: ``python docs/examples/sklearn_xgboost_training.py`` (needs dryml-core, dryml-sklearn and
dryml-xgboost[sklearn]; the digits data set ships with scikit-learn, nothing is downloaded).
"""

from __future__ import annotations

import io

import numpy as np

from dryml import load_object, metrics, save_object
from dryml.data import NumpyDataset
from dryml.models import EarlyStopping, TrainSpec
from dryml_sklearn.models import Estimator, SklearnTrainable
from dryml_xgboost.models import XGBoostTrainable


def digits() -> tuple[NumpyDataset, NumpyDataset]:
    """scikit-learn's bundled digits as train/test supervised Datasets (fixed seed)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order].astype(np.int64)
    cut = int(0.8 * len(x))
    return (NumpyDataset((x[:cut], y[:cut]), supervised=True),
            NumpyDataset((x[cut:], y[cut:]), supervised=True))


def main() -> None:
    """Define, train (each in its framework's worker), score, save and reload two models."""
    train, test = digits()
    # one training procedure, read by both backends: seed, validation split, early stopping
    spec = TrainSpec(validation_split=0.15, early_stopping=EarlyStopping(patience=10), seed=0)
    logreg = SklearnTrainable(
        Estimator("sklearn.pipeline.Pipeline", steps=[
            ("scale", Estimator("sklearn.preprocessing.StandardScaler")),
            ("clf", Estimator("sklearn.linear_model.LogisticRegression", C=0.1,
                              max_iter=1000))]),
        task="classifier", spec=spec)
    boost = XGBoostTrainable("classifier", spec, n_estimators=300, learning_rate=0.3,
                             max_depth=4)
    for name, model in (("logreg", logreg), ("xgboost", boost)):
        model.train(train)
        scores = metrics.score(model, test, ["accuracy", "macro_f1", "log_loss"])
        print(f"{name:8s}", "  ".join(f"{k}={v:.4f}" for k, v in scores.items()))
        assert scores["accuracy"] > 0.9, (name, scores)
        buf = io.BytesIO()
        save_object(model, buf)
        loaded = load_object(io.BytesIO(buf.getvalue()))
        before = np.asarray(model.eval(test).peek()[0])
        assert np.array_equal(np.asarray(loaded.eval(test).peek()[0]), before)
    print(f"xgboost stopped after {boost.train_state.progress['rounds']} of 300 rounds, "
          f"best round {boost.best_iteration}")
    print("logreg validation:", logreg.train_state.history[0])


if __name__ == "__main__":
    main()
