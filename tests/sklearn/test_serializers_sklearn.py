"""dryml-sklearn against the shared serializer conformance suite (dryml.testing.serializers).

One case holds several fitted estimators (a pipeline, a forest, histogram gradient boosting, a
KD-tree neighbours model): predictions are compared bit for bit in this process and in a fresh
one, and the other checks (backend missing, corruption, inspect, version skew) run on it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import pytest

from dryml import Object
from dryml.testing.serializers import SerializerCase, SerializerConformance


class _HideTestFolders:
    """Under pytest, tests/ is on sys.path (rootdir conftest), so where torch is not installed
    tests/torch/ passes for a namespace package 'torch'; sklearn's estimator discovery (run
    when skops is imported) would import it and scipy would then take it for PyTorch. This
    import hook makes such names fail to import, as they would outside pytest."""

    def __init__(self) -> None:
        import importlib.util

        self.names = set()
        for name in ("torch", "tf", "xgboost"):
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.origin is None and all(
                    os.path.basename(os.path.dirname(p)) == "tests"
                    for p in spec.submodule_search_locations or ()):
                self.names.add(name)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}")


if not any(type(f).__name__ == "_HideTestFolders" for f in sys.meta_path):
    sys.meta_path.insert(0, _HideTestFolders())

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
