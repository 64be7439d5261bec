"""dryml.metrics computes the same values as scikit-learn, to 1e-9, over random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dryml.metrics import arrays as F

metrics = pytest.importorskip("sklearn.metrics")


def _classification(seed: int, n: int, k: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class present
    logits = rng.normal(size=(n, k))
    if ties:
        logits = np.round(logits, 1)
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, prob


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(10, 300), k=st.integers(2, 6),
       ties=st.booleans())
def test_classification_metrics_match_sklearn(seed: int, n: int, k: int, ties: bool) -> None:
    y, prob = _classification(seed, n, k, ties)
    labels = prob.argmax(axis=1)
    assert F.accuracy(y, prob) == pytest.approx(metrics.accuracy_score(y, labels), abs=1e-9)
    assert F.balanced_accuracy(y, prob) == pytest.approx(
        metrics.balanced_accuracy_score(y, labels), abs=1e-9)
    assert F.macro_f1(y, labels) == pytest.approx(
        metrics.f1_score(y, labels, average="macro", zero_division=0), abs=1e-9)
    assert F.log_loss(y, prob) == pytest.approx(metrics.log_loss(y, prob), abs=1e-9)
    if k == 2:
        expected = metrics.roc_auc_score(y, prob[:, 1])
        assert F.roc_auc(y, prob[:, 1]) == pytest.approx(expected, abs=1e-9)
    else:
        expected = metrics.roc_auc_score(y, prob, multi_class="ovr")
    assert F.roc_auc(y, prob) == pytest.approx(expected, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(10, 300), k=st.integers(3, 6))
def test_labels_of_the_columns_match_sklearns_labels(seed: int, n: int, k: int) -> None:
    """Labels 1..k with probabilities in that order, scored where label k is missing."""
    y, prob = _classification(seed, n, k, ties=False)
    classes = np.arange(1, k + 1)
    kept = y != k - 1
    y, prob = classes[y[kept]], prob[kept]
    predicted = classes[prob.argmax(axis=1)]
    assert F.accuracy(y, prob, labels=classes) == pytest.approx(
        metrics.accuracy_score(y, predicted), abs=1e-9)
    assert F.log_loss(y, prob, labels=classes) == pytest.approx(
        metrics.log_loss(y, prob, labels=classes), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 300), outputs=st.integers(1, 3))
def test_regression_metrics_match_sklearn(seed: int, n: int, outputs: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (n,) if outputs == 1 else (n, outputs)
    y, pred = rng.normal(size=shape) * 10, rng.normal(size=shape) * 10
    assert F.mean_squared_error(y, pred) == pytest.approx(
        metrics.mean_squared_error(y, pred), abs=1e-9)
    assert F.mean_absolute_error(y, pred) == pytest.approx(
        metrics.mean_absolute_error(y, pred), abs=1e-9)
    assert F.r2(y, pred) == pytest.approx(metrics.r2_score(y, pred), abs=1e-9)


def test_string_labels_and_constant_targets() -> None:
    y = np.array(["cat", "dog", "dog", "emu"])
    p = np.array(["cat", "dog", "emu", "emu"])
    assert F.macro_f1(y, p) == pytest.approx(metrics.f1_score(y, p, average="macro"), abs=1e-12)
    assert F.balanced_accuracy(y, p) == pytest.approx(
        metrics.balanced_accuracy_score(y, p), abs=1e-12)
    const = np.ones(5)
    assert F.r2(const, const) == metrics.r2_score(const, const) == 1.0
    assert F.r2(const, const + 1) == metrics.r2_score(const, const + 1)


def test_log_loss_of_float32_probabilities_clips_as_sklearn_does() -> None:
    """Found by review: probabilities from a torch softmax (float32) with exact 0s and 1s were
    clipped at float64's eps: 9.02 where scikit-learn gives 3.99."""
    logits = np.array([[200.0, 0, -200], [-5, 0, 5], [0, 4, 0], [200, -200, 0]], np.float32)
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob = (prob / prob.sum(axis=1, keepdims=True)).astype(np.float32)
    assert (prob == 0).any() and (prob == 1).any()
    y = np.array([1, 2, 1, 0])
    # scikit-learn computes in float32 for float32 input: they agree to its precision
    assert F.log_loss(y, prob) == pytest.approx(metrics.log_loss(y, prob), rel=1e-6)
    assert F.log_loss(y, prob.astype(np.float64)) == pytest.approx(
        metrics.log_loss(y, prob.astype(np.float64)), abs=1e-9)


@pytest.mark.parametrize("labels", [np.array([1, 2, 3]), np.array(["ant", "bee", "cat"])])
def test_labels_that_are_not_0_to_k_map_to_columns_alike_in_every_metric(
        labels: np.ndarray) -> None:
    """Found by review: accuracy compared the argmax column with the raw label while
    log_loss used the sorted order: labels 1, 2, 3 (or strings) scored accuracy 0.0 next to
    a perfect log_loss. Columns follow the sorted labels, as scikit-learn's classes_."""
    y, prob = _classification(7, 120, 3, ties=False)
    named = labels[y]
    predicted = labels[prob.argmax(axis=1)]
    assert F.accuracy(named, prob) == pytest.approx(metrics.accuracy_score(named, predicted))
    assert F.balanced_accuracy(named, prob) == pytest.approx(
        metrics.balanced_accuracy_score(named, predicted))
    assert F.macro_f1(named, prob) == pytest.approx(
        metrics.f1_score(named, predicted, average="macro"))
    assert F.log_loss(named, prob) == pytest.approx(metrics.log_loss(named, prob))
    assert F.roc_auc(named, prob) == pytest.approx(
        metrics.roc_auc_score(named, prob, multi_class="ovr"))


def test_predictions_holding_nan_are_a_metric_error_in_every_classification_metric() -> None:
    """Found by review: a diverged model's NaN rows scored as class 0 (accuracy 1.0 with one
    NaN row among good ones) and all-NaN predictions an ordinary 0.5 (scikit-learn raises)."""
    from dryml.errors import MetricError

    y, prob = _classification(3, 50, 2, ties=False)
    prob[4] = np.nan
    for metric in (F.accuracy, F.balanced_accuracy, F.macro_f1, F.log_loss, F.roc_auc):
        with pytest.raises(MetricError, match="NaN or infinity \\(row 4 first\\)"):
            metric(y, prob)


def test_a_class_missing_from_the_training_data_keeps_every_column_in_place() -> None:
    """Found by review: without a 3 in the training split, predict_proba has 9 columns
    (classes_ 0,1,2,4..9), and every column from the 4 on was scored as the label before
    it: accuracy 0.33 where scikit-learn says 0.90."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from dryml import metrics as dm
    from dryml.context import shutdown_workers
    from dryml.data import NumpyDataset
    from dryml_sklearn.models import Estimator, SklearnTrainable

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    keep = train[y[train] != 3]
    model = SklearnTrainable(Estimator("sklearn.linear_model.LogisticRegression",
                                       max_iter=2000))
    try:
        model.train(NumpyDataset((x[keep], y[keep]), supervised=True))
        out = model.eval(NumpyDataset((x[test], y[test]), supervised=True))
        got = dm.score(out, metrics=["accuracy", "macro_f1"])
    finally:
        shutdown_workers()
    assert out.peek()[0].shape[1] == 10
    direct = LogisticRegression(max_iter=2000, random_state=model.train_seed).fit(
        x[keep], y[keep]).predict(x[test])
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(y[test], direct))
    assert got["macro_f1"] == pytest.approx(
        metrics.f1_score(y[test], direct, average="macro"))


def test_labels_from_1_are_scored_right_on_a_split_without_the_top_label() -> None:
    """predict_proba put labels 1, 2, 3 in columns 0, 1, 2, while the metrics read integer
    labels below the column count as column numbers: a perfect model scored accuracy 0.0
    (log loss 6.6) on a test split of labels 1 and 2 only (found by the metrics audit).
    Column i is label i now, as in every backend; roc_auc averages over the classes the
    targets hold (the zero column of label 0 has nothing to rank). Labels too far apart to pad
    keep scikit-learn's order, and are refused before fitting when the metrics would read some
    of them as column numbers."""
    from sklearn.linear_model import LogisticRegression

    from dryml import metrics as dm
    from dryml.context import shutdown_workers
    from dryml.data import NumpyDataset
    from dryml.errors import ConfigurationError
    from dryml_sklearn.models import Estimator, SklearnTrainable

    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [0, 0], [4, 0], [0, 4]], dtype=float)  # labels 1, 2, 3
    y = rng.choice([1, 2, 3], 300)
    x = centers[y] + rng.normal(0, 0.3, (300, 2))
    y_test = np.array([1, 2] * 20)
    x_test = centers[y_test] + rng.normal(0, 0.3, (40, 2))
    model = SklearnTrainable(Estimator("sklearn.linear_model.LogisticRegression",
                                       max_iter=500))
    try:
        model.train(NumpyDataset((x, y), supervised=True))
        test = NumpyDataset((x_test, y_test), supervised=True)
        prob = np.concatenate([p for p, _ in model.eval(test)])
        got = dm.score(model, test, metrics=["accuracy", "log_loss", "macro_f1", "roc_auc"])
        with pytest.raises(ConfigurationError, match=r"labels 1, 2, 300 are too far apart.*"
                                                     "number the classes 0..k-1 first"):
            SklearnTrainable(Estimator("sklearn.linear_model.LogisticRegression")).train(
                NumpyDataset((x, np.where(y == 3, 300, y)), supervised=True))
        sparse = SklearnTrainable(Estimator("sklearn.linear_model.LogisticRegression",
                                            max_iter=500))
        codes = np.array([0, 200, 404, 500])
        sparse.train(NumpyDataset((x, codes[y]), supervised=True))
        sparse_test = NumpyDataset((x, codes[y]), supervised=True)
        sparse_prob = np.concatenate([p for p, _ in sparse.eval(sparse_test)])
        sparse_auc = dm.roc_auc(sparse, sparse_test)
    finally:
        shutdown_workers()
    assert prob.shape == (40, 4) and not prob[:, 0].any()  # no label 0: a column of zeros
    direct = LogisticRegression(max_iter=500, random_state=model.train_seed).fit(x, y)
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(
        y_test, direct.predict(x_test))) == 1.0
    assert got["log_loss"] == pytest.approx(metrics.log_loss(
        y_test, direct.predict_proba(x_test), labels=[1, 2, 3]))
    assert got["macro_f1"] == pytest.approx(metrics.f1_score(
        y_test, direct.predict(x_test), average="macro"))
    assert got["roc_auc"] == pytest.approx(metrics.roc_auc_score(
        y_test, direct.predict_proba(x_test)[:, 1]))  # labels 1 and 2: binary, 2 positive
    assert sparse_prob.shape == (300, 3)  # scikit-learn's order, not 501 columns
    sparse_direct = LogisticRegression(max_iter=500, random_state=sparse.train_seed).fit(
        x, codes[y])
    assert sparse_auc == pytest.approx(metrics.roc_auc_score(
        codes[y], sparse_direct.predict_proba(x), multi_class="ovr"))


def test_log_loss_of_values_outside_0_to_1_is_a_metric_error() -> None:
    """Found by review: margins (an XGBoost binary:logitraw) were scored as probabilities.
    roc_auc ranks any scores, as scikit-learn's does, so it takes them."""
    from dryml.errors import MetricError

    y, prob = _classification(3, 50, 2, ties=False)
    for bad in (np.log(prob), prob * 2):
        with pytest.raises(MetricError, match="look like logits or margins"):
            F.log_loss(y, bad)
    margins = np.log(prob[:, 1] / prob[:, 0])
    assert F.roc_auc(y, margins) == pytest.approx(metrics.roc_auc_score(y, margins))


def test_roc_auc_of_logits_ranks_as_of_their_probabilities() -> None:
    """Two columns of logits were ranked by column 1 alone, a row's own shift included
    (0.73 where the probabilities give 0.83); more than two columns of raw scores are refused,
    as scikit-learn refuses them (one-vs-rest on them ranks each row's shift)."""
    from dryml.errors import MetricError

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    logits = rng.normal(size=(400, 2)) + np.stack([np.zeros(400), y * 0.8], axis=1)
    logits += rng.normal(0, 2, (400, 1))  # a per-row shift, which a softmax removes
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = metrics.roc_auc_score(y, prob[:, 1])
    assert F.roc_auc(y, logits) == pytest.approx(expected, abs=1e-9)
    assert F.roc_auc(y, prob) == pytest.approx(expected, abs=1e-9)
    y3 = rng.integers(0, 3, 400)
    with pytest.raises(MetricError, match="needs probabilities, rows summing to 1.*softmax"):
        F.roc_auc(y3, rng.normal(size=(400, 3)))
    # a float16 softmax (mixed precision) sums to 1 only within ~5e-4: still probabilities
    logits3 = rng.normal(size=(400, 3)).astype(np.float16)
    half = np.exp(logits3) / np.exp(logits3).sum(axis=1, keepdims=True)
    assert F.roc_auc(y3, half.astype(np.float32)) == pytest.approx(
        metrics.roc_auc_score(y3, half.astype(np.float64) / half.astype(np.float64).sum(
            axis=1, keepdims=True), multi_class="ovr"), abs=1e-3)


def test_hard_indicator_predictions_naming_no_class_or_several_are_refused() -> None:
    """An all-zero 0/1 row was read as class 0 and a multi-hot one as its first class:
    accuracy 1.0 where scikit-learn's is 0.25."""
    from dryml.errors import MetricError

    y = np.array([0, 1, 0, 2])
    hard = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1]])
    for metric in (F.accuracy, F.macro_f1, F.balanced_accuracy):
        with pytest.raises(MetricError, match="prediction row 0 .*naming no class or several"):
            metric(y, hard)
        with pytest.raises(MetricError, match="naming no class or several"):
            metric(y, hard.astype(np.float32))
    one_each = np.eye(3, dtype=np.int64)[y]
    assert F.accuracy(y, one_each) == 1.0
    votes = np.array([[3, 2, 0], [2, 2, 1], [3, 0, 0], [0, 1, 4]])  # counts may tie as scores
    assert F.accuracy(y, votes) == 0.75
    assert F.accuracy(y, np.full((4, 3), 1 / 3)) == 0.5  # tied probabilities: column 0


def test_regression_metrics_refuse_nan_and_infinity() -> None:
    """r2 of a NaN or infinite target fell into the constant-target branch: a plausible 0.0
    (0.5 with two outputs); scikit-learn raises."""
    from dryml.errors import MetricError

    y, p = np.arange(5.0), np.arange(5.0) + 0.1
    for metric in (F.r2, F.mean_squared_error, F.mean_absolute_error):
        for bad in (np.nan, np.inf):
            t = y.copy()
            t[2] = bad
            with pytest.raises(MetricError, match="targets hold NaN or infinity \\(row 2"):
                metric(t, p)
            q = p.copy()
            q[3] = bad
            with pytest.raises(MetricError, match="predictions hold NaN or infinity \\(row 3"):
                metric(y, q)


def test_a_nan_in_one_hot_targets_is_said_to_be_in_the_targets() -> None:
    """A NaN in one-hot targets was reported as one in the predictions ("the model
    diverged"), sending the user to look at the wrong array."""
    from dryml.errors import MetricError

    y = np.eye(3)[[0, 1, 2, 1]]
    y[1, 0] = np.nan
    p = np.eye(3)[[0, 1, 2, 2]]
    with pytest.raises(MetricError, match="targets hold NaN or infinity \\(row 1"):
        F.accuracy(y, p)


def test_one_sigmoid_column_is_the_positive_class() -> None:
    """(n, 1) probabilities (a Keras or torch sigmoid unit) were read as class 0's column:
    log_loss 1.51 where scikit-learn gives 0.30, or a MetricError on mixed targets."""
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.7, 0.6, 0.4, 0.9])
    assert F.log_loss(y, p[:, None]) == pytest.approx(metrics.log_loss(y, p), abs=1e-9)
    assert F.roc_auc(y, p[:, None]) == pytest.approx(metrics.roc_auc_score(y, p), abs=1e-9)
    zeros = np.zeros(4, dtype=np.int64)
    assert F.log_loss(zeros, p[:4, None]) == pytest.approx(
        metrics.log_loss(zeros, p[:4], labels=[0, 1]), abs=1e-9)


def test_mismatched_label_kinds_and_widths_are_refused() -> None:
    """One-hot targets wider than the predictions were renumbered (accuracy 0.75), string
    targets against numbers scored 0.0, and labels= with label predictions went unchecked."""
    from dryml.errors import MetricError

    onehot = np.eye(4)[[1, 2, 3, 1]]
    prob = np.full((4, 3), 0.1) + np.eye(3)[[0, 1, 2, 0]] * 0.7
    with pytest.raises(MetricError, match="one-hot targets have 4 columns but the predictions "
                                          "have 3"):
        F.accuracy(onehot, prob)
    with pytest.raises(MetricError, match="one-hot targets have 4 columns"):
        F.log_loss(onehot, prob)
    with pytest.raises(MetricError, match="targets are strings but the predictions are numbers"):
        F.accuracy(np.array(["a", "b"]), np.array([0, 1]))
    as_objects = np.array(["a", "b", "b"], dtype=object)  # a pandas column of strings
    assert F.accuracy(as_objects, np.array(["a", "b", "a"])) == pytest.approx(2 / 3)
    with pytest.raises(MetricError, match="prediction label 2 is not among labels \\[0, 1\\]"):
        F.macro_f1(np.array([0, 1, 1]), np.array([0, 1, 2]), labels=[0, 1])
    with pytest.raises(MetricError, match="target label 'x' is not among"):
        F.accuracy(np.array(["x", "y"]), np.array(["y", "y"]), labels=["y", "z"])
    assert F.macro_f1(np.array([0, 1]), np.array([0, 1]), labels=[0, 1, 2]) == 1.0
