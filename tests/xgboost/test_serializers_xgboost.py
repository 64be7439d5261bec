"""dryml-xgboost against the shared serializer conformance suite (dryml.testing.serializers)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dryml import Object
from dryml.testing.serializers import SerializerCase, SerializerConformance

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("xgboost")
    pytest.importorskip("sklearn")


def make_data(n: int = 400, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic tabular problem (features, integer labels)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    score = x[:, 0] + 0.5 * x[:, 1] ** 2 - x[:, 2] * x[:, 3] + rng.normal(0, 0.3, n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    return x, y.astype(np.int64)


class BoosterModel(Object):
    """A raw Booster trained with ``xgboost.train`` and early stopping."""

    dry_mut = True
    dry_framework = "xgboost"

    def __init__(self, params: dict[str, Any], rounds: int) -> None:
        self.params, self.rounds = params, rounds
        self.booster: Any = None

    def fit(self) -> None:
        """Train on the deterministic data, early stopping on a held-out part."""
        import xgboost as xgb

        x, y = make_data()
        train = xgb.DMatrix(x[:300], label=y[:300], feature_names=[f"f{i}" for i in range(6)])
        valid = xgb.DMatrix(x[300:], label=y[300:], feature_names=[f"f{i}" for i in range(6)])
        self.booster = xgb.train(self.params, train, self.rounds, evals=[(valid, "valid")],
                                 early_stopping_rounds=5, verbose_eval=False)

    def save_object_imp(self, store: Any) -> None:
        store.put("booster", self.booster)

    def load_object_imp(self, store: Any) -> None:
        self.booster = store.get("booster")


class SklearnModel(Object):
    """An XGBClassifier / XGBRegressor named by its class name."""

    dry_mut = True
    dry_framework = "xgboost"

    def __init__(self, estimator: str, **params: Any) -> None:
        import xgboost as xgb

        self.model = getattr(xgb, estimator)(**params)

    def fit(self) -> None:
        """Fit on the deterministic data (regressors regress on the label)."""
        x, y = make_data()
        self.model.fit(x[:300], y[:300], eval_set=[(x[300:], y[300:])], verbose=False)

    def save_object_imp(self, store: Any) -> None:
        store.put("model", self.model)

    def load_object_imp(self, store: Any) -> None:
        self.model = store.get("model")


def build_booster() -> BoosterModel:
    obj = BoosterModel({"objective": "multi:softprob", "num_class": 3, "max_depth": 4,
                        "eta": 0.3, "seed": 0, "nthread": 1, "eval_metric": "mlogloss"}, 60)
    obj.fit()
    return obj


def booster_output(obj: BoosterModel) -> dict[str, np.ndarray]:
    import xgboost as xgb

    x, _ = make_data()
    data = xgb.DMatrix(x, feature_names=[f"f{i}" for i in range(6)])
    best = obj.booster.best_iteration
    return {"proba": obj.booster.predict(data),
            "best_proba": obj.booster.predict(data, iteration_range=(0, best + 1)),
            "best_iteration": np.asarray(best),
            "rounds": np.asarray(obj.booster.num_boosted_rounds())}


def build_classifier() -> SklearnModel:
    obj = SklearnModel("XGBClassifier", n_estimators=80, max_depth=3, learning_rate=0.2,
                       early_stopping_rounds=5, eval_metric="mlogloss", random_state=0,
                       n_jobs=1, missing=float("nan"), monotone_constraints=None)
    obj.fit()
    return obj


def classifier_output(obj: SklearnModel) -> dict[str, np.ndarray]:
    x, _ = make_data()
    model = obj.model
    params = model.get_params()
    assert params["n_estimators"] == 80 and params["early_stopping_rounds"] == 5
    assert params["base_score"] is None and np.isnan(params["missing"])
    return {"proba": model.predict_proba(x), "pred": model.predict(x),
            "classes": model.classes_, "best_iteration": np.asarray(model.best_iteration),
            "evals": np.asarray(model.evals_result_["validation_0"]["mlogloss"])}


def build_regressor() -> SklearnModel:
    obj = SklearnModel("XGBRegressor", n_estimators=50, max_depth=5, subsample=0.8,
                       random_state=0, n_jobs=1, feature_weights=None)
    obj.fit()
    return obj


def regressor_output(obj: SklearnModel) -> dict[str, np.ndarray]:
    x, _ = make_data()
    assert obj.model.get_params()["subsample"] == 0.8
    return {"pred": obj.model.predict(x), "n_features": np.asarray(obj.model.n_features_in_)}


def _case(name: str, build: Any, output: Any) -> SerializerCase:
    return SerializerCase(name, build=build, output=output, plugin="xgboost",
                          package="dryml-xgboost", frameworks=("xgboost",),
                          framework_modules=("xgboost", "sklearn"))


class TestXGBoostConformance(SerializerConformance):
    """Round trip, fresh process, backend missing, corruption, inspect, version skew."""

    cases = (
        _case("booster", build_booster, booster_output),
        _case("classifier", build_classifier, classifier_output),
        _case("regressor", build_regressor, regressor_output),
    )


def test_a_classifier_fitted_on_one_class_keeps_its_classes(tmp_path: Path) -> None:
    """load_model reads n_classes_ from the booster, where one class reads as two: classes_
    came back [0, 1] for [0]."""

    from dryml import load_object, save_object

    x = np.random.default_rng(0).normal(size=(20, 3))
    holder = SklearnModel("XGBClassifier", n_estimators=3)
    holder.model.fit(x, np.zeros(20, dtype=int))
    model = holder.model
    save_object(holder, tmp_path / "one.dry")
    loaded = load_object(tmp_path / "one.dry").model
    assert loaded.n_classes_ == model.n_classes_ == 1
    assert loaded.classes_.tolist() == model.classes_.tolist() == [0]
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))
