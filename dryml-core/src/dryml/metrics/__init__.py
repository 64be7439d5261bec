"""Metrics shared by every framework: the same definitions as scikit-learn.

:mod:`dryml.metrics.arrays` scores numpy arrays of targets and predictions.
"""

from __future__ import annotations

from dryml.metrics.arrays import (
    accuracy,
    balanced_accuracy,
    log_loss,
    macro_f1,
    mean_absolute_error,
    mean_squared_error,
    r2,
    roc_auc,
)

__all__ = [
    "accuracy",
    "balanced_accuracy",
    "log_loss",
    "macro_f1",
    "mean_absolute_error",
    "mean_squared_error",
    "r2",
    "roc_auc",
]
