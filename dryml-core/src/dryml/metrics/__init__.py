"""Metrics shared by every framework, with scikit-learn's definitions.

Each metric takes a trained Trainable (or predictions) and a supervised Dataset from any
framework, scores **every** example (nothing is dropped by batching), and matches
scikit-learn's value for the same predictions to 1e-9::

    accuracy(model, test_ds)            # evaluates model on test_ds
    accuracy(model.eval(test_ds))       # an eval() output already pairs predictions and targets
    accuracy(predicted_probabilities, test_ds)

Classification predictions are class probabilities (n, classes) or labels; regression
predictions are values. :mod:`dryml.metrics.arrays` holds the same metrics over plain arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dryml.metrics import arrays
from dryml.metrics._datasets import targets_and_predictions

__all__ = [
    "METRICS",
    "accuracy",
    "arrays",
    "balanced_accuracy",
    "log_loss",
    "macro_f1",
    "mean_absolute_error",
    "mean_squared_error",
    "r2",
    "roc_auc",
    "score",
]


def _dataset_metric(fn: Callable[..., float]) -> Callable[..., float]:
    def metric(model_or_predictions: Any, data: Any = None, **options: Any) -> float:
        y_true, y_pred = targets_and_predictions(model_or_predictions, data)
        return fn(y_true, y_pred, **options)

    metric.__name__ = metric.__qualname__ = fn.__name__
    metric.__doc__ = (f"{(fn.__doc__ or '').strip()}\n\nTakes a Trainable and a Dataset, an "
                      "eval() output, or predictions and a Dataset (see dryml.metrics).")
    return metric


accuracy = _dataset_metric(arrays.accuracy)
balanced_accuracy = _dataset_metric(arrays.balanced_accuracy)
log_loss = _dataset_metric(arrays.log_loss)
macro_f1 = _dataset_metric(arrays.macro_f1)
roc_auc = _dataset_metric(arrays.roc_auc)
mean_squared_error = _dataset_metric(arrays.mean_squared_error)
mean_absolute_error = _dataset_metric(arrays.mean_absolute_error)
r2 = _dataset_metric(arrays.r2)

_ARRAY_METRICS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": arrays.accuracy, "balanced_accuracy": arrays.balanced_accuracy,
    "log_loss": arrays.log_loss, "macro_f1": arrays.macro_f1, "roc_auc": arrays.roc_auc,
    "mse": arrays.mean_squared_error, "mae": arrays.mean_absolute_error, "r2": arrays.r2,
}
#: Every metric by short name (for leaderboards and command lines).
METRICS: dict[str, Callable[..., float]] = {
    name: _dataset_metric(fn) for name, fn in _ARRAY_METRICS.items()}


def score(model_or_predictions: Any, data: Any = None, metrics: list[str] | None = None
          ) -> dict[str, float]:
    """Several metrics from one evaluation, by short name (see :data:`METRICS`)::

        score(model, test_ds, ["accuracy", "macro_f1", "log_loss"])
    """
    names = metrics or ["accuracy", "macro_f1", "log_loss"]
    unknown = [n for n in names if n not in _ARRAY_METRICS]
    if unknown:
        from dryml.errors import MetricError

        raise MetricError(f"unknown metrics {unknown}; choose from {sorted(_ARRAY_METRICS)}")
    y_true, y_pred = targets_and_predictions(model_or_predictions, data)
    return {name: _ARRAY_METRICS[name](y_true, y_pred) for name in names}
