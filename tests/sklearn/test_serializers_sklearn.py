"""dryml-sklearn against the shared serializer conformance suite (dryml.testing.serializers).

One case holds several fitted estimators (a pipeline, a forest, histogram gradient boosting, a
KD-tree neighbours model): predictions are compared bit for bit in this process and in a fresh
one, and the other checks (backend missing, corruption, inspect, version skew) run on it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from dryml import Object
from dryml.testing.serializers import SerializerCase, SerializerConformance

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("sklearn")
    pytest.importorskip("skops")


def make_data() -> tuple[np.ndarray, np.ndarray]:
    """A small deterministic classification problem."""
    from sklearn.datasets import make_classification

    return make_classification(300, 6, n_informative=4, random_state=0)


class Models(Object):
    """Fitted scikit-learn estimators kept in the store under their names."""

    dry_framework = "sklearn"

    def __init__(self, names: list[str]) -> None:
        self.models: dict[str, Any] = {}

    def save_object_imp(self, store: Any) -> None:
        for name, model in self.models.items():
            store.put(name, model)

    def load_object_imp(self, store: Any) -> None:
        self.models = {name: store.get(name) for name in self.dry_args[0]}


def build_models() -> Models:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = make_data()
    models = {
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()),
        "forest": RandomForestClassifier(20, random_state=0),
        "hgb": HistGradientBoostingClassifier(max_iter=20, random_state=0),
        "knn": KNeighborsClassifier(algorithm="kd_tree"),
    }
    obj = Models(sorted(models))
    obj.models = {name: model.fit(x, y) for name, model in models.items()}
    return obj


def models_output(obj: Models) -> dict[str, np.ndarray]:
    x, _ = make_data()
    return {name: model.predict_proba(x) for name, model in obj.models.items()}


class TestSklearnConformance(SerializerConformance):
    """Round trip, fresh process, backend missing, corruption, inspect, version skew."""

    cases = (
        SerializerCase("estimators", build=build_models, output=models_output,
                       plugin="sklearn", package="dryml-sklearn",
                       frameworks=("scikit-learn", "skops"),
                       framework_modules=("sklearn", "skops")),
    )
