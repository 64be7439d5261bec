"""Save an XGBoost classifier with dryml-xgboost and load it back (docs/backends.md).

The trees travel as XGBoost's own UBJSON model; parameters and the best iteration are kept.
Run: ``python docs/examples/backends_xgboost.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from dryml import Object, load_object, save_object


class Boosted(Object):
    """An XGBClassifier built from its parameters."""

    dry_mut = True

    def __init__(self, **params: Any) -> None:
        self.model = xgb.XGBClassifier(**params)

    def save_object_imp(self, store: Any) -> None:
        store.put("model", self.model)

    def load_object_imp(self, store: Any) -> None:
        self.model = store.get("model")


def main() -> None:
    """Fit with early stopping, save, load, and compare predictions bit for bit."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8))
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int)
    obj = Boosted(n_estimators=200, max_depth=3, early_stopping_rounds=10, n_jobs=1,
                  random_state=0)
    obj.model.fit(x[:400], y[:400], eval_set=[(x[400:], y[400:])], verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "boosted.dry"
        save_object(obj, path)
        loaded = load_object(path)
    assert np.array_equal(obj.model.predict_proba(x), loaded.model.predict_proba(x))
    assert loaded.model.best_iteration == obj.model.best_iteration
    before, after = obj.model.get_params(), loaded.model.get_params()
    assert np.isnan(before.pop("missing")) and np.isnan(after.pop("missing"))  # nan != nan
    assert before == after
    print(f"best iteration {loaded.model.best_iteration}: identical predictions after load")


if __name__ == "__main__":
    main()
