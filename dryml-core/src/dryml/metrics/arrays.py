"""Metrics over numpy arrays: the same definitions as scikit-learn, without depending on it.

Each function takes the true targets and the predictions of every example (nothing dropped)
and matches scikit-learn's value for the same inputs to 1e-9
(``tests/sklearn/test_metrics_parity.py`` checks each against scikit-learn).

Classification predictions may be labels (1-D) or scores/probabilities (2-D, one column per
class, or 1-D probabilities of the positive class for the probabilistic metrics); targets may
be labels or one-hot rows (one class per example: multi-hot rows are refused). For integer
labels from 0 up, column ``i`` holds label ``i``, as every dryml backend gives them; other
labels (strings) name the columns in their sorted order, which then needs every class among
the targets. ``labels=`` names the label of each column instead: a scikit-learn
``predict_proba`` of labels ``1..k`` is in ``classes_`` order, so score it with
``labels=model.classes_`` (read as column numbers, labels ``1..k-1`` of a test set that lacks
label ``k`` would name the wrong columns).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dryml.errors import MetricError

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


def _n(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if len(y_true) != len(y_pred):
        raise MetricError(f"{len(y_true)} targets but {len(y_pred)} predictions; every "
                          "example needs one prediction")
    if len(y_true) == 0:
        raise MetricError("no examples to score")


def labels_of(values: Any) -> np.ndarray:
    """Class labels from labels (1-D, or (n, 1)) or from scores/one-hot rows (argmax).

    One column of floats that are not whole numbers is a MetricError, as in scikit-learn: a
    one-unit sigmoid's probabilities compared with labels 0/1 scored 0.0 (they are scores of
    the positive class, not labels: threshold them, or give one column per class)."""
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    elif array.ndim == 2:
        _finite(array)
        _one_per_row(array)
        return np.asarray(np.argmax(array, axis=1))
    if array.ndim != 1:
        raise MetricError(f"expected labels (n,) or scores (n, classes), got shape {array.shape}")
    _finite(array, "labels")
    if np.issubdtype(array.dtype, np.floating) and not _whole(array):
        raise MetricError(
            "expected class labels but got a column of non-integer numbers (probabilities or "
            "scores of one class?): threshold them, e.g. (p > 0.5).astype(int), or pass one "
            "column per class (n, classes)")
    return array


def _one_per_row(array: np.ndarray) -> None:
    """Hard 0/1 predictions (n, k) name one class per row: an all-zero row or a multi-hot one
    is a MetricError (its argmax, column 0 or the first class set, scored as a prediction:
    accuracy 1.0 where scikit-learn's is 0.25). Scores and probabilities may tie."""
    # 0/1 values only, whatever the dtype: integer vote counts may tie like scores
    if not array.shape[0] or not np.all((array == 0) | (array == 1)):
        return
    tied = _tied_rows(array)
    if len(tied):
        raise MetricError(
            f"prediction row {int(tied[0])} ({array[tied[0]].tolist()[:8]}) is 0/1 indicators "
            "naming no class or several: these metrics score one class per example; give "
            "probabilities or scores (n, classes), labels (n,), or score each label as its own "
            "binary problem, e.g. accuracy(y[:, j], p[:, j])")


def _tied_rows(array: np.ndarray) -> np.ndarray:
    """Indices of the rows of (n, k) ``array`` whose largest value is there more than once."""
    return np.flatnonzero((array == array.max(axis=1, keepdims=True)).sum(axis=1) > 1)


def target_labels(values: Any) -> np.ndarray:
    """Class labels of the true targets: labels (1-D, or (n, 1)) or rows that name one class
    (one-hot, or smoothed: the largest value). A row whose largest value is there more than
    once (multi-hot: a multilabel problem, or no class at all) is a MetricError: these
    metrics score one class per example, and the argmax of a multi-hot row kept only its
    first class (accuracy 1.0 where scikit-learn's subset accuracy is 0.75)."""
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] > 1 and array.shape[0]:
        _finite(array, "targets")
        tied = _tied_rows(array)
        if len(tied):
            raise MetricError(
                f"target row {int(tied[0])} ({array[tied[0]].tolist()[:8]}) does not name one "
                "class: a multilabel (multi-hot) target? These metrics score one class per "
                "example; score each label as its own binary problem, e.g. "
                "accuracy(y[:, j], p[:, j] > 0.5)")
        _class_rows(array)
    return labels_of(array)


def _class_rows(array: np.ndarray) -> None:
    """Target rows (n, k) are one-hot, smoothed or probability rows: values in [0, 1] that sum
    to 1. Anything else (two label columns [[3, 1], [0, 2]], regression values of two outputs)
    is a MetricError: its argmax was taken for the class (accuracy 1.0 where scikit-learn
    refuses such targets)."""
    if array.dtype.kind not in "biuf":
        raise MetricError(f"targets of shape {array.shape} and dtype {array.dtype} are no "
                          "one-hot rows; give one label per example (n,)")
    with np.errstate(all="ignore"):
        sums = array.sum(axis=1, dtype=np.float64)
        bad = np.flatnonzero((array < 0).any(axis=1) | (array > 1).any(axis=1)
                             | (np.abs(sums - 1) > 1e-3))
    if len(bad):
        row = int(bad[0])
        raise MetricError(
            f"target row {row} ({array[row].tolist()[:8]}) is no one-hot row (values in "
            "[0, 1] summing to 1): targets of several columns must name one class a row; "
            "for labels give one per example (n,), for several outputs score each on its own")


def _whole(labels: np.ndarray) -> bool:
    """Whether ``labels`` are integers, or floats that are whole numbers."""
    return bool(np.issubdtype(labels.dtype, np.integer) or (
        np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0)))


def _columns_named(p: np.ndarray, k: int) -> None:
    """Label predictions (n,) scored against one-hot targets of ``k`` columns, whose labels are
    their column numbers 0..k-1: another label never matched them (a perfect model of labels
    {1, 2} scored 0.0)."""
    if not len(p) or _text(p):
        return  # strings against column numbers: _same_kind says so
    if p.dtype.kind == "b":  # False and True name columns 0 and 1 (found by review)
        p = p.astype(np.int64)
    outside = p[(p < 0) | (p >= k)] if _whole(p) else p
    if len(outside):
        raise MetricError(
            f"the targets are one-hot rows of {k} columns, whose labels are the column numbers "
            f"0..{k - 1}, but a prediction is {outside[0].tolist()!r}: map the predictions to "
            "column numbers, or the targets to labels (np.asarray(classes)[y.argmax(1)])")


_NOT_FINITE = {
    "targets": "drop or fill those examples before scoring",
    "predictions": "the model diverged, or its outputs overflowed; there is nothing to score",
    "labels": "drop or fill those examples before scoring (targets), or look at the model "
              "that gave them (predictions)",
}


def _finite(values: np.ndarray, what: str = "predictions") -> None:
    """Scores, probabilities or regression values with a NaN or an infinity are a MetricError
    (otherwise a diverged model's NaN rows would score as class 0, all-NaN ones as an ordinary
    0.5, and r2 of a NaN target as 0.0). ``what`` names them: "predictions" or "targets"."""
    if np.issubdtype(values.dtype, np.inexact) and not np.all(np.isfinite(values)):
        row = int(np.argwhere(~np.isfinite(values))[0][0])
        raise MetricError(f"the {what} hold NaN or infinity (row {row} first): "
                          f"{_NOT_FINITE[what]}")


def _column_labels(labels: Any, k: int) -> np.ndarray:
    """``labels`` checked: one label per column of (n, k) scores."""
    named = np.asarray(labels)
    if named.ndim != 1:
        raise MetricError(f"labels must be a flat sequence, one label per column, got shape "
                          f"{named.shape}")
    if len(named) != k:
        raise MetricError(f"labels names {len(named)} labels but the predictions have {k} "
                          "columns; give the label of every column, in order")
    return named


def _target_columns(y_true: Any, k: int, labels: Any) -> np.ndarray:
    """The column each target names: one-hot rows name theirs (``labels`` is only checked),
    labels as :func:`_columns` maps them."""
    given = np.asarray(y_true)
    t = target_labels(given)
    if given.ndim == 2 and given.shape[1] > 1:
        if given.shape[1] != k:  # its columns 1..k would be renumbered 0..k-1 by _columns
            raise MetricError(f"one-hot targets have {given.shape[1]} columns but the "
                              f"predictions have {k}; both need one column per class")
        if labels is not None:
            _column_labels(labels, k)
        labels = None
    return _columns(t, k, labels)


def _given_columns(t: np.ndarray, k: int, labels: Any) -> np.ndarray:
    """The column of each target label when ``labels`` names the label of every column."""
    named = _column_labels(labels, k)
    if len(np.unique(named)) != k:
        raise MetricError("labels names a label twice; give each column's label once")
    order = np.argsort(named, kind="stable")
    try:
        at = np.clip(np.searchsorted(named[order], t), 0, k - 1)
        known = named[order][at] == t
    except TypeError:  # labels of one kind, targets of another (strings against numbers)
        known = np.zeros(len(t), dtype=bool)
        at = np.zeros(len(t), dtype=np.int64)
    if not np.all(known):
        raise MetricError(f"the target label {t[~known][0].tolist()!r} is not among labels "
                          f"{named.tolist()!r}")
    return order[at].astype(np.int64)


def _columns(t: np.ndarray, k: int, labels: Any = None) -> np.ndarray:
    """The column of (n, k) scores that each target label names: integer labels 0..k-1 (or
    whole-number floats) name their own column; other labels (strings, or 1..k) the column
    of their place among the sorted distinct labels, as scikit-learn orders ``classes_``.
    Every metric maps labels so: were accuracy to compare the argmax column with the raw
    label while log_loss used the sorted order, labels 1, 2, 3 would score accuracy 0.0 next
    to a perfect log_loss."""
    if labels is not None:
        return _given_columns(t, k, labels)
    classes = np.unique(t)
    # whole-number floats too (labels_of refuses others), as the torch backend trains on
    # them: a test split missing a class was refused ("targets hold 2 classes but ... 3")
    if _whole(t) and (not len(classes) or (classes.min() >= 0 and classes.max() < k)):
        return t.astype(np.int64)
    if len(classes) != k:
        raise MetricError(
            f"targets hold {len(classes)} classes but the predictions have {k} columns; use "
            f"integer labels 0..{k - 1}")
    return np.searchsorted(classes, t).astype(np.int64)


def _label_pairs(y_true: Any, y_pred: Any, labels: Any = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted labels, comparable: a prediction of scores (n, k) is its argmax
    column, and the targets the columns they name (:func:`_columns`)."""
    scores = np.asarray(y_pred)
    p = labels_of(y_pred)
    if scores.ndim == 2 and scores.shape[1] > 1:
        t = _target_columns(y_true, scores.shape[1], labels)
    else:
        given = np.asarray(y_true)
        t = target_labels(given)
        _same_kind(t, p)
        if given.ndim == 2 and given.shape[1] > 1:
            _columns_named(p, given.shape[1])
        if labels is not None:  # it names score columns; label predictions have none
            _among(labels, t, p)
    _n(t, p)
    return t, p


def _same_kind(t: np.ndarray, p: np.ndarray) -> None:
    """String labels against numbers never compare equal: a MetricError, not a score of 0.0
    (argmax column numbers compared with string targets)."""
    if not len(t) or not len(p) or _text(t) == _text(p):
        return
    raise MetricError(
        f"the targets are {'strings' if _text(t) else 'numbers'} but the predictions are "
        f"{'strings' if _text(p) else 'numbers'}: they never compare equal; map one to the "
        "other (column numbers to labels: np.asarray(classes)[columns])")


def _text(labels: np.ndarray) -> bool:
    """Whether labels are strings: a numpy string array, or objects (a pandas column)."""
    if labels.dtype.kind in "US":
        return True
    return labels.dtype.kind == "O" and isinstance(labels.flat[0], (str, bytes))


def _among(labels: Any, t: np.ndarray, p: np.ndarray) -> None:
    """With label predictions (n,), ``labels`` is only checked: every target and prediction
    must be among them. It names score columns; unlike scikit-learn's ``labels=``, it adds no
    class to macro_f1's average."""
    named = np.asarray(labels)
    if named.ndim != 1:
        raise MetricError(f"labels must be a flat sequence, got shape {named.shape}")
    for what, values in (("target", t), ("prediction", p)):
        try:
            outside = values[~np.isin(values, named)]
        except TypeError:
            outside = values
        if len(outside):
            raise MetricError(f"the {what} label {outside[0].tolist()!r} is not among labels "
                              f"{named.tolist()!r}")


def accuracy(y_true: Any, y_pred: Any, *, labels: Any = None) -> float:
    """Fraction of examples whose predicted label equals the true label."""
    t, p = _label_pairs(y_true, y_pred, labels)
    return float(np.mean(t == p))


def _confusion(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, inverse = np.unique(np.concatenate([t, p]), return_inverse=True)
    k = len(classes)
    ti, pi = inverse[: len(t)], inverse[len(t):]
    matrix = np.bincount(ti * k + pi, minlength=k * k).reshape(k, k)
    return classes, matrix


def balanced_accuracy(y_true: Any, y_pred: Any, *, labels: Any = None) -> float:
    """Mean recall over the classes present in the targets."""
    t, p = _label_pairs(y_true, y_pred, labels)
    _, matrix = _confusion(t, p)
    support = matrix.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(matrix)[present] / support[present]))


def macro_f1(y_true: Any, y_pred: Any, *, labels: Any = None) -> float:
    """Unweighted mean F1 over every label seen in targets or predictions (0 where undefined)."""
    t, p = _label_pairs(y_true, y_pred, labels)
    _, matrix = _confusion(t, p)
    tp = np.diag(matrix).astype(np.float64)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(np.mean(f1))


def _probabilities(y_true: np.ndarray, y_prob: Any, labels: Any = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Targets as class indices and probabilities as an (n, classes) float array."""
    prob = np.asarray(y_prob, dtype=np.float64)
    if prob.ndim == 2 and prob.shape[1] == 1:  # one sigmoid unit: the positive class
        prob = prob[:, 0]
    if prob.ndim == 1:
        prob = np.stack([1 - prob, prob], axis=1)
    if prob.ndim != 2:
        raise MetricError(f"probabilities must be (n,) or (n, classes), got {prob.shape}")
    _finite(prob)
    t = _target_columns(y_true, prob.shape[1], labels)
    _n(t, prob)
    return t, prob


def log_loss(y_true: Any, y_prob: Any, *, labels: Any = None) -> float:
    """Mean negative log-likelihood of the true class; probabilities clipped to [eps, 1-eps]."""
    # clipped at the input's own precision, as scikit-learn does: float32 probabilities (a
    # torch softmax) with exact 0s were clipped at float64's eps and scored 9.0 for 3.99
    given = np.asarray(y_prob)
    dtype = given.dtype if np.issubdtype(given.dtype, np.floating) else np.float64
    t, prob = _probabilities(np.asarray(y_true), y_prob, labels)
    if prob.size and (prob.min() < 0 or prob.max() > 1 + 1e-6):
        # otherwise an XGBoost binary:logitraw's margins (-4.8 to 5.8) would be scored
        # (roc_auc takes any scores: it ranks them)
        raise MetricError(
            f"log_loss needs probabilities in [0, 1], got values from {prob.min():.4g} to "
            f"{prob.max():.4g}: these look like logits or margins (apply a softmax or "
            "sigmoid first)")
    row = _off_one(prob)
    if prob.size and row is not None:
        raise MetricError(
            f"log_loss needs rows of probabilities summing to 1 (row {row} sums to "
            f"{prob[row].sum():.4g}): a sigmoid per column (a multilabel network)? Score each "
            "label's column on its own, log_loss(y[:, j], p[:, j])")
    eps = np.finfo(dtype).eps
    prob = np.clip(prob, eps, 1 - eps)
    return float(-np.mean(np.log(prob[np.arange(len(t)), t])))


def _off_one(prob: np.ndarray) -> int | None:
    """The row of ``prob`` (n, k) whose sum is farthest from 1, when one is more than 1e-2
    off (a float16 softmax, Keras' mixed precision, sums to 1 +- 5e-4); None when every row
    is a distribution."""
    sums = prob.sum(axis=1)
    if np.allclose(sums, 1.0, rtol=0, atol=1e-2):
        return None
    return int(np.argmax(np.abs(sums - 1.0)))


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise MetricError("ROC AUC needs both positive and negative examples of every class")
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    ranks = np.empty(len(score), dtype=np.float64)
    # average ranks for ties (Mann-Whitney U equals the trapezoidal area under the ROC curve)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_auc(y_true: Any, y_prob: Any, *, labels: Any = None) -> float:
    """Binary ROC AUC, or for more than two columns the unweighted one-vs-rest mean over the
    classes present in the targets (a column of a class they lack, such as the column of
    zeros dryml-sklearn gives label 0 of labels 1..k, has no positives to rank).

    Binary scores may be one column (the positive class) or two, probabilities or logits: two
    columns rank by their difference (a row's logits carry a shift of their own, which ranking
    column 1 alone counted: 0.73 for 0.83). More than two columns must be probabilities (rows
    summing to 1), as in scikit-learn: one-vs-rest on raw scores ranks each row's shift."""
    t, prob = _probabilities(np.asarray(y_true), y_prob, labels)
    row = _off_one(prob)
    if prob.shape[1] == 2:  # probabilities rank by column 1 alone, as scikit-learn's do
        return _binary_auc(t == 1, prob[:, 1] if row is None else prob[:, 1] - prob[:, 0])
    if row is not None:
        raise MetricError(
            f"multi-class roc_auc needs probabilities, rows summing to 1 (row {row} sums to "
            f"{prob[row].sum():.4g}): these look like logits or scores; apply a softmax first")
    return float(np.mean([_binary_auc(t == c, prob[:, c]) for c in np.unique(t)]))


def _regression(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.ndim == 1 and p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.ndim == 1 and t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.shape != p.shape:
        raise MetricError(f"targets {t.shape} and predictions {p.shape} differ in shape")
    _n(t, p)
    _finite(t, "targets")
    _finite(p)
    return t.reshape(len(t), -1), p.reshape(len(p), -1)


def mean_squared_error(y_true: Any, y_pred: Any) -> float:
    """Mean squared error (averaged over outputs)."""
    t, p = _regression(y_true, y_pred)
    return float(np.mean(np.mean((t - p) ** 2, axis=0)))


def mean_absolute_error(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error (averaged over outputs)."""
    t, p = _regression(y_true, y_pred)
    return float(np.mean(np.mean(np.abs(t - p), axis=0)))


def r2(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination, averaged over outputs (1.0 / 0.0 for constant targets);
    one example is a MetricError (its R^2 is undefined: scikit-learn gives NaN)."""
    t, p = _regression(y_true, y_pred)
    if len(t) < 2:
        raise MetricError(f"r2 needs at least two examples (it compares the errors with the "
                          f"targets' spread), got {len(t)}")
    ss_res = ((t - p) ** 2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    scores = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                      np.where(ss_res == 0, 1.0, 0.0))
    return float(np.mean(scores))
