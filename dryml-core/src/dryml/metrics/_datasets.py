"""Getting every target and prediction out of Datasets and Trainables, as numpy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from dryml.errors import MetricError

__all__ = ["targets_and_predictions"]


def _columns(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of every example of a supervised Dataset, stacked (nothing dropped)."""
    from dryml.errors import DatasetError
    from dryml.models import supervised_arrays

    try:
        return supervised_arrays(data, "scored")
    except DatasetError as exc:
        raise MetricError(f"cannot score: {exc}") from None


def targets_and_predictions(model_or_predictions: Any, data: Any = None
                            ) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` from a Trainable and a Dataset, from an ``eval`` output Dataset, or
    from predictions (array or Dataset of ``x``) aligned with a supervised Dataset."""
    from dryml.data import Dataset
    from dryml.models import Trainable

    if isinstance(model_or_predictions, Trainable):
        if data is None:
            raise MetricError("scoring a Trainable needs the Dataset to evaluate it on")
        pred, y = _columns(model_or_predictions.eval(data))
        return y, pred
    if isinstance(model_or_predictions, Dataset) and data is None:
        pred, y = _columns(model_or_predictions)  # an eval() output: (prediction, y)
        return y, pred
    if data is None:
        raise MetricError("predictions need the supervised Dataset holding their targets")
    _, y = _columns(data)
    _, again = _columns(data)
    # an unseeded shuffle whose passes happened to give the same targets (repeated labels)
    # is caught by its flag; other sources that reorder, by the two passes' targets
    if getattr(getattr(data, "_meta", None), "reshuffled", False) or not _same(y, again):
        # the targets are read in a pass of their own, which may give them in another order
        # than the predictions' (accuracy 0.31 for a perfect model)
        raise MetricError(
            "the Dataset gives its examples in another order on each pass (an unseeded "
            "shuffle), so predictions made on one pass cannot be paired with the targets of "
            "another: score the model on it, metric(model, data), or its eval() output, "
            "metric(model.eval(data)); or shuffle with a seed")
    if isinstance(model_or_predictions, Dataset):
        # each (prediction, y) pair (or index) was stacked into one row and scored as one
        if model_or_predictions.supervised:
            raise MetricError(
                "the predictions Dataset is supervised (an eval() output holds (prediction, y) "
                "pairs): pass it alone, metric(model.eval(data)), or pass predictions only, "
                "metric(preds.as_not_indexed().as_not_supervised(), data)")
        if model_or_predictions.indexed:
            raise MetricError("the predictions Dataset is indexed: pass preds.as_not_indexed()")
        preds = model_or_predictions.numpy()
        parts = [np.asarray(p) for p in preds]
        pred = (np.concatenate if preds.batched else np.stack)(parts)
    else:
        pred = np.asarray(model_or_predictions)
    return y, pred


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two passes gave the same targets (NaN equal to NaN)."""
    nan_aware = a.dtype.kind in "fc" and b.dtype.kind in "fc"
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=nan_aware))
