"""Helpers of :mod:`dryml_xgboost.models` (imports XGBoost: used only while training)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import xgboost
from tqdm.auto import tqdm  # type: ignore[import-untyped, unused-ignore]

from dryml.errors import ConfigurationError, DatasetError

__all__ = ["ProgressBar", "as_arrays", "history_of", "split_off"]

#: rows per batch when gathering an unbatched Dataset into arrays
_CHUNK = 8192


def as_arrays(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of every example of a supervised Dataset (any framework) as numpy arrays."""
    ds = data.numpy()
    if ds.indexed:
        ds = ds.as_not_indexed()
    if not ds.supervised:
        raise DatasetError("training needs a supervised Dataset of (x, y) elements; use "
                           "NumpyDataset((x, y), supervised=True) or .as_supervised()")
    if not ds.batched:  # whole batches cut from the arrays: ~80x faster than row by row
        ds = ds.batch(_CHUNK)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for x, y in ds:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    if not xs:
        raise DatasetError("the training Dataset has no examples")
    return np.concatenate(xs), np.concatenate(ys)


def split_off(x: np.ndarray, y: np.ndarray, fraction: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random ``fraction`` of the examples (chosen with ``seed``) as validation data:
    ``(x_train, y_train, x_valid, y_valid)``."""
    n = len(x)
    n_valid = round(n * fraction)
    if n_valid < 1 or n_valid >= n:
        raise ConfigurationError(
            f"validation_split={fraction} of {n} examples leaves no training or no "
            "validation examples; change validation_split or pass validation data")
    order = np.random.default_rng(seed).permutation(n)
    train, valid = np.sort(order[n_valid:]), np.sort(order[:n_valid])
    return x[train], y[train], x[valid], y[valid]


def _last(log: dict[str, Any], data_name: str) -> dict[str, float]:
    return {name: float(values[-1]) for name, values in log.get(data_name, {}).items() if values}


class ProgressBar(xgboost.callback.TrainingCallback):
    """A tqdm bar over boosting rounds (to stderr): round, training loss, validation metric."""

    def __init__(self, total: int, desc: str) -> None:
        super().__init__()
        self.total, self.desc = total, desc
        self.bar: Any = None

    def before_training(self, model: Any) -> Any:
        """Open the bar."""
        self.bar = tqdm(total=self.total, desc=self.desc, unit="round", file=sys.stderr,
                        dynamic_ncols=True)
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        """Advance one round; show the latest metrics. Never asks to stop."""
        shown: dict[str, str] = {}
        for data_name, prefix in (("validation_0", ""), ("validation_1", "val_")):
            for name, value in _last(evals_log, data_name).items():
                shown[prefix + name] = f"{value:.4g}"
        if self.bar is not None:
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)
        return False

    def after_training(self, model: Any) -> Any:
        """Close the bar (early stopping may leave it short of its total)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        return model


def history_of(evals_result: dict[str, dict[str, list[float]]]) -> list[dict[str, float]]:
    """One dict per boosting round: every metric by name (``val_`` for validation), and
    ``loss`` / ``val_loss``: the last metric of each, the one XGBoost's early stopping watches."""
    rows: list[dict[str, float]] = []
    for data_name, prefix in (("validation_0", ""), ("validation_1", "val_")):
        metrics = evals_result.get(data_name, {})
        last = len(metrics) - 1
        for k, (name, values) in enumerate(metrics.items()):
            for i, value in enumerate(values):
                while len(rows) <= i:
                    rows.append({"round": float(len(rows) + 1)})
                rows[i][prefix + name] = float(value)
                if k == last:
                    rows[i][prefix + "loss"] = float(value)
    return rows
