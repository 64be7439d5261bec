"""Trainables of every framework that share one TrainSpec hold out the same validation rows,
also under the default seed="auto"."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dryml.data import NumpyDataset
from dryml.models import TrainSpec, split_validation


def _trainables(spec: TrainSpec) -> dict[str, Any]:
    from dryml_sklearn import models as sk
    from dryml_tf import models as keras
    from dryml_torch import models as torch
    from dryml_xgboost import models as xgb

    return {
        "sklearn": sk.SklearnTrainable(sk.Estimator("sklearn.linear_model.LogisticRegression"),
                                       spec=spec),
        "xgboost": xgb.XGBoostTrainable("classifier", spec, n_estimators=2),
        "torch": torch.TorchTrainable(
            torch.Sequential([("Linear", {"in_features": 2, "out_features": 2})]), spec=spec),
        "tf": keras.KerasTrainable(keras.Sequential([("Dense", {"units": 2})],
                                                    input_shape=(2,)), spec=spec),
    }


@pytest.mark.parametrize("seed", ["auto", 7])
def test_trainables_sharing_a_spec_hold_out_the_same_rows(monkeypatch: pytest.MonkeyPatch,
                                                          seed: Any) -> None:
    """Each backend split with its trained object's seed, so under seed="auto" torch and
    XGBoost shared 18 of 80 validation rows: their val_ histories and early stopping compared
    other examples. The split itself is the real one; the spy only records its rows."""
    import dryml.models
    import dryml_tf._models_fit
    import dryml_torch._models_loop
    import dryml_xgboost.models

    held: dict[str, list[int]] = {}
    training: list[str] = []

    def split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> Any:
        train, valid = split_validation(x, y, fraction, seed)
        held[training[-1]] = sorted(int(v) for v in valid[0][:, 0])
        return train, valid

    # where each backend finds it (dryml-sklearn imports it from dryml.models when it fits)
    for module in (dryml.models, dryml_xgboost.models, dryml_torch._models_loop,
                   dryml_tf._models_fit):
        monkeypatch.setattr(module, "split_validation", split)
    rows = np.arange(200, dtype=np.float32)
    x = np.stack([rows, rows % 7], axis=1).astype(np.float32)  # column 0: the row number
    data = NumpyDataset((x, (rows % 2).astype(np.int64)), supervised=True)
    spec = TrainSpec(epochs=1, validation_split=0.2, seed=seed)
    models = _trainables(spec)
    for name, model in models.items():
        training.append(name)
        model.fit(data, None)  # here, not in a worker: the spy sees the split
    assert set(held) == set(models)
    first = held["sklearn"]
    assert len(first) == 40
    assert all(rows_held == first for rows_held in held.values()), held
    if seed == "auto":  # the weights' seeds stay each object's own
        assert len({m.train_seed for m in models.values()}) == 4
