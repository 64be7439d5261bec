"""dryml.models (Trainable, TrainSpec, Pipe) and Dataset-level metrics, with numpy models."""

from __future__ import annotations

import io
from typing import Any, ClassVar

import numpy as np
import pytest

from dryml import ObjectDef, load_object, metrics, save_object
from dryml.data import NumpyDataset
from dryml.errors import ConfigurationError, MetricError, NotTrainedError
from dryml.metrics import arrays
from dryml.models import INTERRUPTED, EarlyStopping, Pipe, Trainable, TrainSpec
from dryml.repo import Selector


class Centering(Trainable):
    """Learns the mean of x and subtracts it (a transform step)."""

    task = "regressor"

    def __init__(self, spec: TrainSpec | None = None) -> None:
        self.mean: np.ndarray | None = None

    def fit(self, data: Any, valid: Any) -> None:
        x = np.concatenate([np.asarray(b[0]) for b in data.numpy().batch(64)])
        self.mean = x.mean(axis=0)

    def predict(self, x: Any) -> Any:
        assert self.mean is not None
        return np.asarray(x) - self.mean

    def save_object_imp(self, store: Any) -> None:
        if self.mean is not None:
            store.put("mean", self.mean)

    def load_object_imp(self, store: Any) -> None:
        self.mean = store.get("mean", None)


class Nearest(Trainable):
    """Nearest class mean, trained for ``spec.epochs`` 'epochs' (records progress)."""

    def __init__(self, spec: TrainSpec, fail_at_epoch: int | None = None) -> None:
        self.spec, self.fail_at_epoch = spec, fail_at_epoch
        self.centers: np.ndarray | None = None

    def fit(self, data: Any, valid: Any) -> None:
        start = self.train_state.progress.get("epoch", 0)
        for epoch in range(start, self.spec.epochs):
            if epoch == self.fail_at_epoch:
                self.fail_at_epoch = None
                raise RuntimeError("interrupted")
            x, y = (np.concatenate(part) for part in zip(*data.numpy().batch(50), strict=True))
            self.centers = np.stack([x[y == c].mean(axis=0) for c in np.unique(y)])
            self.train_state.progress["epoch"] = epoch + 1
            self.train_state.history.append({"epoch": epoch + 1.0})

    def predict(self, x: Any) -> Any:
        assert self.centers is not None
        d = -((np.asarray(x)[:, None, :] - self.centers[None]) ** 2).sum(-1)
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def save_object_imp(self, store: Any) -> None:
        if self.centers is not None:
            store.put("centers", self.centers)

    def load_object_imp(self, store: Any) -> None:
        self.centers = store.get("centers", None)


def blobs(n: int = 300, seed: int = 0) -> NumpyDataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 2)) + np.array([[0, 0], [4, 0], [0, 4]])[y]
    return NumpyDataset((x, y), supervised=True)


def test_train_eval_and_state_survive_save_load() -> None:
    model = Nearest(TrainSpec(epochs=3))
    assert model.train_state.status == "untrained"
    with pytest.raises(NotTrainedError, match="call train"):
        model.eval(blobs())
    model.train(blobs())
    assert model.trained and model.train_state.progress == {"epoch": 3}
    out = model.eval(blobs(seed=1))
    assert out.supervised and out.batch_size == 300
    probs, _ = out.peek()
    assert probs.shape == (300, 3)
    assert metrics.accuracy(out) > 0.9
    buf = io.BytesIO()
    save_object(model, buf)
    loaded = load_object(io.BytesIO(buf.getvalue()))
    assert loaded.trained and len(loaded.train_state.history) == 3
    np.testing.assert_array_equal(loaded.eval(blobs(seed=1)).peek()[0], probs)


def test_eval_keeps_structure_of_unbatched_and_indexed_data() -> None:
    model = Nearest(TrainSpec(epochs=1))
    model.train(blobs())
    data = blobs(seed=2).unbatch().as_indexed()
    out = model.eval(data)
    assert (out.indexed, out.supervised, out.batched, len(out)) == (True, True, False, 300)
    i, (p, y) = out.peek()
    assert i == 0 and p.shape == (3,) and y == data.peek()[1][1]


def test_interrupted_training_resumes_from_recorded_progress() -> None:
    model = Nearest(TrainSpec(epochs=4), fail_at_epoch=2)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.train(blobs())
    assert model.train_state.status == "training" and model.train_state.progress["epoch"] == 2
    buf = io.BytesIO()
    save_object(model, buf)
    resumed = load_object(io.BytesIO(buf.getvalue()))
    resumed.fail_at_epoch = None
    resumed.train(blobs())
    assert resumed.trained and [h["epoch"] for h in resumed.train_state.history] == [1, 2, 3, 4]


def test_pipe_trains_steps_in_order_and_resumes_after_finished_steps() -> None:
    center, clf = Centering(), Nearest(TrainSpec(epochs=2))
    pipe = Pipe(center, clf)
    pipe.train(blobs())
    assert pipe.trained and pipe.train_state.progress["steps_done"] == 2
    assert metrics.accuracy(pipe, blobs(seed=3)) > 0.9
    # a pipe whose first step is done only trains the rest
    fresh = Pipe(center, Nearest(TrainSpec(epochs=1)))
    before = center.mean.copy()
    fresh.train(blobs(seed=9))
    np.testing.assert_array_equal(center.mean, before)
    buf = io.BytesIO()
    save_object(pipe, buf)
    loaded = load_object(io.BytesIO(buf.getvalue()))
    np.testing.assert_array_equal(loaded.eval(blobs(seed=3)).peek()[0],
                                  pipe.eval(blobs(seed=3)).peek()[0])


def test_a_pipe_refuses_a_trained_step_after_one_it_must_train() -> None:
    """A Pipe whose first step was replaced by an untrained one kept the later step trained on
    the old step's outputs, and reported itself trained with wrong scores (found by review).
    It is refused before anything trains; a fresh copy of the later step trains."""
    clf = Nearest(TrainSpec(epochs=1))
    Pipe(Centering(), clf).train(blobs())
    replaced = Pipe(Centering(), clf)
    with pytest.raises(ConfigurationError, match="step 1 .Nearest. of this Pipe has trained "
                                                 ".or begun to. but step 0 .Centering."):
        replaced.train(blobs())
    assert not replaced.steps[0].trained
    fresh = Pipe(Centering(), clf.definition().fresh_ids().build())
    fresh.train(blobs())
    assert fresh.trained and metrics.accuracy(fresh, blobs(seed=3)) > 0.9
    save_object(Pipe(replaced.steps[0], clf), io.BytesIO())  # what the error advises saves


def test_a_pipe_refuses_the_same_step_twice() -> None:
    """``Pipe(c, c)`` trained ``c`` once and then applied it twice (found by review)."""
    center = Centering()
    with pytest.raises(ConfigurationError, match="the same step appears more than once"):
        Pipe(center, center, Nearest(TrainSpec(epochs=1)))
    copy = center.definition().fresh_ids().build()
    pipe = Pipe(center, copy, Nearest(TrainSpec(epochs=1)))
    assert pipe.steps[1] is copy
    save_object(pipe, io.BytesIO())  # the copy saves beside the original


def test_components_are_part_of_the_definition_and_selectable() -> None:
    spec = TrainSpec(epochs=5, batch_size=16, validation_split=0.2,
                     early_stopping=EarlyStopping(patience=2), seed=3)
    model = Nearest(spec)
    d = model.definition()
    assert d.args[0].kwargs["early_stopping"].kwargs["patience"] == 2
    rebuilt = ObjectDef.from_dict(d.to_dict()).build()
    assert rebuilt.spec.early_stopping.patience == 2
    assert Selector(Nearest, args=(Selector(TrainSpec, kwargs={"epochs": 5}),))(model)
    assert not Selector(Nearest, args=(Selector(TrainSpec, kwargs={"epochs": 6}),))(model)


def test_train_spec_rejects_nonsense() -> None:
    # early stopping without validation_split is refused by train() when no validation
    # Dataset is passed (tests/xgboost/test_trainers_xgboost.py), not by TrainSpec
    with pytest.raises(ConfigurationError, match=r"pass a validation Dataset.*in a Search, a "
                                                 r"trial's model is given the scored rows"):
        Nearest(TrainSpec(early_stopping=EarlyStopping())).train(blobs())
    with pytest.raises(ConfigurationError, match="validation_split"):
        TrainSpec(validation_split=1.5)


def test_metrics_accept_model_eval_output_or_predictions() -> None:
    model = Nearest(TrainSpec(epochs=1))
    model.train(blobs())
    test = blobs(seed=5)
    probs = model.eval(test).peek()[0]
    y = test.peek()[1]
    expected = arrays.accuracy(y, probs)
    assert metrics.accuracy(model, test) == metrics.accuracy(model.eval(test)) == expected
    assert metrics.accuracy(probs, test) == expected
    assert metrics.accuracy(probs, test.unbatch().batch(7)) == expected  # nothing dropped
    scores = metrics.score(model, test, ["accuracy", "macro_f1", "log_loss", "roc_auc"])
    assert scores["accuracy"] == expected and 0 < scores["log_loss"] < 1
    with pytest.raises(MetricError, match="supervised"):
        metrics.accuracy(probs, NumpyDataset(test.peek()[0]))
    with pytest.raises(MetricError, match="unknown metrics"):
        metrics.score(model, test, ["acc"])


def test_an_eval_output_passed_with_the_data_is_refused_not_misscored() -> None:
    """Found by review: each (prediction, y) pair was stacked into one row and scored as a
    prediction (0.33 for a true 0.67), or failed with a bare ValueError when batched."""
    y = np.array([0, 1, 2, 1, 0, 2])
    pred = np.array([0, 1, 1, 1, 2, 2])
    test = NumpyDataset((np.zeros((6, 2)), y), supervised=True)
    evaluated = NumpyDataset((pred, y), supervised=True)
    assert metrics.accuracy(evaluated) == pytest.approx(4 / 6)
    for data in (evaluated, evaluated.unbatch(), evaluated.unbatch().batch(4)):
        with pytest.raises(MetricError, match=r"pass it alone, metric\(model.eval\(data\)\)"):
            metrics.accuracy(data, test)
    with pytest.raises(MetricError, match="indexed"):
        metrics.accuracy(NumpyDataset(pred).as_indexed(), test)
    assert metrics.accuracy(evaluated.as_not_supervised(), test) == pytest.approx(4 / 6)


@pytest.mark.parametrize("shape", [(4,), (4, 1)])
def test_probabilities_of_one_class_are_not_taken_for_labels(shape: tuple[int, ...]) -> None:
    """Found by review: a one-unit sigmoid's outputs, all on the right side of 0.5, scored
    accuracy 0.0 (compared with the labels as they were)."""
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.7, 0.1]).reshape(shape)
    for metric in (arrays.accuracy, arrays.balanced_accuracy, arrays.macro_f1):
        with pytest.raises(MetricError, match=r"threshold them, e.g. \(p > 0.5\)"):
            metric(y, p)
    assert arrays.accuracy(y, (p > 0.5).astype(int)) == 1.0
    assert arrays.accuracy(y.astype(float), np.array([1.0, 0.0, 1.0, 1.0]).reshape(shape)) \
        == 0.75  # whole numbers in a float array are labels


def test_multi_hot_targets_are_refused_and_one_hot_or_smoothed_rows_are_labels() -> None:
    """A multilabel target's rows were scored by their argmax, the first of their classes:
    accuracy 1.0 where scikit-learn's subset accuracy is 0.75 (found by the metrics audit)."""
    one_hot = np.eye(3)[[0, 2, 1, 2]]
    pred = np.array([[0.8, 0.1, 0.1], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3], [0.6, 0.2, 0.2]])
    smoothed = one_hot * 0.9 + 0.1 / 3
    for targets in (one_hot, smoothed, np.array([0, 2, 1, 2])):
        assert arrays.accuracy(targets, pred) == 0.75
        assert arrays.log_loss(targets, pred) == pytest.approx(
            -np.mean(np.log([0.8, 0.7, 0.4, 0.2])))
    multi_hot = one_hot.copy()
    multi_hot[1, 0] = 1
    for metric in (arrays.accuracy, arrays.macro_f1, arrays.log_loss, arrays.roc_auc):
        with pytest.raises(MetricError, match=r"target row 1 \(\[1.0, 0.0, 1.0\]\) does not "
                                              "name one class: a multilabel"):
            metric(multi_hot, pred)
    with pytest.raises(MetricError, match="target row 0"):
        arrays.accuracy(np.zeros((4, 3)), pred)  # no class at all


def test_targets_of_several_columns_must_be_class_rows_and_name_the_predictions() -> None:
    """Found by the metrics audit: one-hot targets scored against label predictions 1 and 2
    (a perfect model) gave accuracy 0.0, their labels being the column numbers 0 and 1; two
    label columns [[3, 1], [0, 2]] or two regression outputs were read as smoothed one-hot
    rows (accuracy 1.0). scikit-learn refuses both; so do dryml's metrics, saying why."""
    y = np.array([1, 2, 2, 1])
    one_hot = np.eye(2)[y - 1]
    for metric in (arrays.accuracy, arrays.macro_f1):
        with pytest.raises(MetricError, match=r"the targets are one-hot rows of 2 columns, "
                                              r"whose labels are the column numbers 0..1, "
                                              r"but a prediction is 2"):
            metric(one_hot, y)
    assert arrays.accuracy(one_hot, y - 1) == 1.0
    for targets in (np.array([[3, 1], [0, 2], [1, 0], [0, 1]]),
                    np.array([[0.3, -1.2], [0.5, 0.4], [1.0, 0.0], [0.0, 1.0]])):
        with pytest.raises(MetricError, match=r"target row 0 .* is no one-hot row \(values "
                                              r"in \[0, 1\] summing to 1\)"):
            arrays.accuracy(targets, np.array([0, 1, 0, 1]))
    assert arrays.accuracy(one_hot * 0.9 + 0.05, y - 1) == 1.0  # smoothed rows are classes
    assert arrays.accuracy(one_hot, (y - 1).astype(bool)) == 1.0  # booleans name 0 and 1


def test_whole_number_float_labels_name_their_columns_as_integers_do() -> None:
    """Found by the metrics audit: the torch backend trains on labels 0., 1., 2.; scored on a
    test split without class 2 they were refused ("targets hold 2 classes but the predictions
    have 3 columns") where the same integer labels scored."""
    prob = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1]])
    assert arrays.accuracy(np.array([0.0, 1.0, 0.0]), prob) == arrays.accuracy(
        np.array([0, 1, 0]), prob) == 1.0


def test_labels_names_the_label_of_each_column() -> None:
    """Probabilities in scikit-learn's classes_ order for labels 1..3, scored on a test set
    without label 3: read as column numbers, labels 1 and 2 named the wrong columns (accuracy
    0.0 for a perfect model). labels= says which label each column stands for."""
    y = np.array([1, 2, 2, 1])
    prob = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    classes = np.array([1, 2, 3])
    assert arrays.accuracy(y, prob) == 0.0  # the documented reading without labels
    assert arrays.accuracy(y, prob, labels=classes) == 1.0
    assert arrays.balanced_accuracy(y, prob, labels=classes) == 1.0
    assert arrays.macro_f1(y, prob, labels=classes) == 1.0
    assert arrays.log_loss(y, prob, labels=classes) == pytest.approx(
        -np.mean(np.log([0.9, 0.8, 0.7, 0.6])))
    assert arrays.roc_auc(np.array([1, 2, 2, 1]), prob[:, :2] / prob[:, :2].sum(1, keepdims=True),
                          labels=[1, 2]) == 1.0
    data = NumpyDataset((np.zeros((4, 1)), y), supervised=True)
    assert metrics.accuracy(prob, data, labels=classes) == 1.0  # the Dataset metrics too
    strings = np.array(["cat", "dog", "dog", "cat"])
    assert arrays.accuracy(strings, prob, labels=["cat", "dog", "emu"]) == 1.0
    with pytest.raises(MetricError, match="labels names 2 labels but the predictions have 3"):
        arrays.accuracy(y, prob, labels=[1, 2])
    with pytest.raises(MetricError, match="the target label 4 is not among labels"):
        arrays.log_loss(np.array([1, 4, 2, 1]), prob, labels=classes)
    with pytest.raises(MetricError, match="names a label twice"):
        arrays.accuracy(y, prob, labels=[1, 1, 2])
    with pytest.raises(MetricError, match=r"labels must be a flat sequence.*\(1, 3\)"):
        arrays.accuracy(y, prob, labels=[[1, 2, 3]])
    one_hot = np.eye(3)[[0, 1, 1, 0]]  # one-hot rows name their columns: labels change nothing
    assert arrays.accuracy(one_hot, prob, labels=classes) == 1.0
    assert arrays.log_loss(one_hot, prob, labels=[3, 1, 2]) == arrays.log_loss(one_hot, prob)


# -- the trainer conformance suite, run on a core-only trainable ------------------------------

from dryml.testing.trainers import TrainerCase, TrainerConformance  # noqa: E402


def build_nearest() -> Nearest:
    return Nearest(TrainSpec(epochs=2))


class TestNumpyTrainerConformance(TrainerConformance):
    cases: ClassVar[list[TrainerCase]] = [TrainerCase("nearest", build_nearest, "classifier", min_score=0.95,
                         component=Selector(TrainSpec, kwargs={"epochs": 2}))]


def test_predictions_scored_against_an_unseeded_shuffle_are_refused() -> None:
    """Found by review: metric(predictions, data) read the targets in a pass of their own,
    which an unseeded shuffle ordered anew: a perfect model scored accuracy 0.31."""
    labels = np.arange(200) % 3
    data = NumpyDataset((np.zeros((200, 1)), labels), supervised=True)
    for shuffled, expected in ((data.shuffle(seed=4), 1.0), (data.shuffle(), None)):
        perfect = np.eye(3)[np.concatenate([y for _, y in shuffled.batch(50)])]  # one pass
        if expected is None:
            with pytest.raises(MetricError, match="another order on each pass"):
                metrics.accuracy(perfect, shuffled)
        else:
            assert metrics.accuracy(perfect, shuffled) == expected


def test_a_nested_x_or_y_is_a_dataset_error_that_says_to_combine_it() -> None:
    """A dict x failed in every trainer and metric with numpy's "zero-dimensional arrays
    cannot be concatenated"; a tuple y with "2 targets but 20 predictions" (found by the
    dataset audit)."""
    from dryml.errors import DatasetError
    from dryml.models import supervised_arrays

    x = {"a": np.zeros((20, 2)), "b": np.ones((20, 3))}
    y = np.arange(20) % 2
    for data in (NumpyDataset((x, y), supervised=True),
                 NumpyDataset((x, y), supervised=True).unbatch().batch(7)):
        with pytest.raises(DatasetError, match=r"the training data's x is a nested structure, "
                                               r"\{'a': x, 'b': x\}, and dryml's trainers"):
            supervised_arrays(data)
        with pytest.raises(MetricError, match=r"cannot score: the scored data's x is a nested"):
            metrics.accuracy(y, data)
    with pytest.raises(MetricError, match=r"y is a nested structure, \(x, x\)"):
        metrics.accuracy(y, NumpyDataset((x["a"], (y, y)), supervised=True))
    combined = NumpyDataset((x, y), supervised=True).map(  # as the error advises
        lambda e: (np.concatenate([e[0]["a"], e[0]["b"]], axis=-1), e[1]))
    assert supervised_arrays(combined)[0].shape == (20, 5)


def test_x_and_y_of_other_row_counts_are_a_dataset_error() -> None:
    """Found by the dataset audit: an ``apply_x(lambda x: x.reshape(-1, 8))`` of the wrong
    width gave batches of 4 rows of x for 8 labels; in a compute context every trainer took
    them (rows of x paired with other rows' labels, a validation split of mismatched rows)
    without an error."""
    from dryml.errors import DatasetError
    from dryml.models import split_validation, supervised_arrays

    x = np.arange(64 * 4, dtype=np.float32).reshape(64, 4)
    y = np.arange(64) % 2
    bad = NumpyDataset((x, y), supervised=True).batch(8).apply_x(lambda b: b.reshape(-1, 8))
    with pytest.raises(DatasetError, match=r"a batch of the training data holds 4 row\(s\) "
                                           r"of x and 8 row\(s\) of y; x and y need one row"):
        supervised_arrays(bad)
    with pytest.raises(DatasetError, match=r"the data to split for validation holds 32 "
                                           r"row\(s\) of x and 64 row\(s\) of y"):
        split_validation(x.reshape(-1, 8), y, 0.25, seed=0)
    assert supervised_arrays(NumpyDataset((x, y), supervised=True).batch(8))[0].shape == (
        64, 4)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"min_delta": float("nan")}, "min_delta is the least improvement"),
    ({"min_delta": "0.1"}, "min_delta is the least improvement"),
    ({"min_delta": True}, "min_delta is the least improvement"),
    ({"patience": -1}, "patience is a whole number"),
    ({"patience": True}, "patience is a whole number"),
    ({"patience": float("inf")}, "patience is a whole number"),
])
def test_early_stopping_refuses_what_no_backend_can_read(kwargs: dict[str, Any],
                                                        match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        EarlyStopping(**kwargs)
    assert EarlyStopping(patience=np.int64(3), min_delta=np.float32(0.5)).rounds == 3
    assert EarlyStopping(patience=2.0).rounds == 2


def test_early_stopping_reads_what_each_backend_read_its_own_way_as_keras_did() -> None:
    """A negative min_delta counted a worse value as an improvement in torch, was made
    positive by Keras and raised in XGBoost; patience 1.5 was 1 epoch in torch, 2 in Keras.
    Every backend reads them as Keras did, with a warning (a saved file still loads)."""
    from dryml.errors import DrymlWarning

    with pytest.warns(DrymlWarning, match="min_delta=-0.5 is read as 0.5"):
        stopping = EarlyStopping(min_delta=-0.5)
    assert stopping.min_delta == 0.5 and not stopping.improved(0.9, best=0.5)
    assert stopping.improved(0.1, best=0.7) and not stopping.improved(0.3, best=0.7)
    with pytest.warns(DrymlWarning, match="patience=1.5 is read as 2 epochs"):
        assert EarlyStopping(patience=1.5).rounds == 2
    with pytest.warns(DrymlWarning, match="min_delta=-0.5"):
        loaded = load_object(io.BytesIO(_saved(EarlyStopping, min_delta=-0.5)))
    assert loaded.min_delta == 0.5


def _saved(cls: type, **kwargs: Any) -> bytes:
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_object(cls(**kwargs), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("monitor", ["val_cosine_similarity", "val_pearson_correlation",
                                     "val_concordance_correlation",
                                     "val_sensitivity_at_specificity",
                                     "val_specificity_at_sensitivity"])
def test_early_stopping_reads_kerass_higher_is_better_metrics_as_such(monitor: str) -> None:
    assert EarlyStopping(monitor=monitor).mode == "max"


def test_eval_of_an_empty_dataset_gives_an_empty_output_of_the_same_form() -> None:
    """A supervised or indexed Dataset without examples raised numpy's "need at least one
    array to concatenate"."""
    model = Nearest(TrainSpec(epochs=1))
    model.train(blobs())
    data = blobs()
    for empty in (data.batch(4).take(0), data.unbatch().as_indexed().take(0),
                  data.as_not_supervised().batch(4).take(0)):
        out = model.eval(empty)
        assert (out.supervised, out.indexed) == (empty.supervised, empty.indexed)
        assert list(out.unbatch() if out.batched else out) == []


def test_a_pipe_refuses_a_later_step_that_began_training_and_a_step_nested_twice() -> None:
    """A later step checkpointed mid-training resumed on a replaced earlier step's outputs
    (accuracy 0.92 where a fresh one gave 0.98); Pipe(Pipe(sc, other), sc) applied sc twice."""
    raised, checkpoint = (Nearest(TrainSpec(epochs=4), fail_at_epoch=2) for _ in range(2))
    for clf in (raised, checkpoint):
        with pytest.raises(RuntimeError, match="interrupted"):
            Pipe(Centering(), clf).train(blobs())
        assert clf.train_state.status == "training"
        clf.fail_at_epoch = None
    checkpoint.train_state.progress.pop(INTERRUPTED)  # as one saved at epoch 2's end holds it
    with pytest.raises(ConfigurationError, match="step 1 .Nearest. of this Pipe has trained "
                                                 ".or begun to."):
        Pipe(Centering(), checkpoint).train(blobs())
    # one whose training raised starts over in the backends (this one's fit resumes anyway)
    Pipe(Centering(), raised).train(blobs())
    center = Centering()
    with pytest.raises(ConfigurationError, match="the same step appears more than once"):
        Pipe(Pipe(center, Centering()), center, Nearest(TrainSpec(epochs=1)))


def test_r2_of_one_example_and_labels_holding_nan_are_said_to_be_so() -> None:
    """Found by the metrics audit: r2 of one example was 0.0 (1.0 when right), where it is
    undefined (scikit-learn: NaN); a NaN label was "a column of non-integer numbers
    (probabilities or scores of one class?)"."""
    with pytest.raises(MetricError, match="r2 needs at least two examples"):
        arrays.r2([1.0], [2.0])
    assert arrays.r2([1.0, 2.0], [1.0, 2.0]) == 1.0
    with pytest.raises(MetricError, match=r"the labels hold NaN or infinity \(row 1 first\)"):
        arrays.accuracy(np.array([0.0, np.nan, 1.0]), np.array([0, 1, 1]))


def test_log_loss_of_rows_that_are_no_distribution_is_refused() -> None:
    """Found by the metrics audit: rows of independent sigmoids (summing to 1.6) were scored
    as one class's probabilities (scikit-learn warns); roc_auc already refused such rows."""
    prob = np.array([[0.9, 0.7], [0.2, 0.8], [0.6, 0.3]])
    with pytest.raises(MetricError, match=r"row 0 sums to 1.6\): a sigmoid per column"):
        arrays.log_loss(np.array([0, 1, 0]), prob)
    softmax = prob / prob.sum(axis=1, keepdims=True)
    assert arrays.log_loss(np.array([0, 1, 0]), softmax.astype(np.float16)) > 0


def test_a_component_set_after_construction_is_said_not_to_be_recorded() -> None:
    """Found by the resume audit: model.spec = TrainSpec(epochs=2) on a model built with 6
    trained 6 epochs in a worker and 2 in place, and a saved copy recorded 6, without a word."""
    from dryml.errors import DrymlWarning

    model = Nearest(TrainSpec(epochs=6))
    model.spec = TrainSpec(epochs=2)
    with pytest.warns(DrymlWarning, match=r"Nearest.spec holds another object than the 'spec' "
                                          r"it was built with: a component set after "
                                          r"construction is not recorded"):
        model.train(blobs())
    import warnings

    built = Nearest(TrainSpec(epochs=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        built.train(blobs())  # as built: no warning
