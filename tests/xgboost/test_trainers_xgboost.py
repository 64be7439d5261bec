"""dryml-xgboost's XGBoostTrainable: the trainer conformance suite, early stopping on a
validation split (stops early, keeps the best round), seeds, progress shown.

Training called from the test process runs in a real ``xgboost`` compute context (a worker
process) and the trained state comes back, as it does for users.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import Any, ClassVar

import numpy as np
import pytest

from dryml import load_object, save_object
from dryml.errors import ConfigurationError
from dryml.models import EarlyStopping, TrainSpec
from dryml.repo import Selector
from dryml.testing.trainers import (
    TrainerCase,
    TrainerConformance,
    classification_data,
    regression_data,
)

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("xgboost")
    pytest.importorskip("sklearn")

from dryml_xgboost.models import XGBoostTrainable  # noqa: E402


def stopping_spec(patience: int = 5, seed: int = 0, **kwargs: object) -> TrainSpec:
    return TrainSpec(validation_split=0.25, seed=seed,
                     early_stopping=EarlyStopping(patience=patience, **kwargs))


def build_classifier() -> XGBoostTrainable:
    return XGBoostTrainable("classifier", stopping_spec(), n_estimators=200, max_depth=3)


def build_regressor() -> XGBoostTrainable:
    return XGBoostTrainable("regressor", TrainSpec(seed=1), n_estimators=60, max_depth=3)


class TestXGBoostTrainers(TrainerConformance):
    cases: ClassVar[list[TrainerCase]] = [
        TrainerCase("classifier", build_classifier, "classifier", min_score=0.95,
                    component=Selector(EarlyStopping, kwargs={"patience": 5})),
        TrainerCase("regressor", build_regressor, "regressor", min_score=0.9,
                    component=Selector(TrainSpec, kwargs={"seed": 1})),
    ]


def test_early_stopping_stops_before_n_estimators_and_predicts_with_the_best_round() -> None:
    model = XGBoostTrainable("classifier", stopping_spec(patience=5), n_estimators=1000,
                             learning_rate=0.5)
    model.train(classification_data())
    rounds, best = model.train_state.progress["rounds"], model.best_iteration
    print(f"stopped after {rounds} of 1000 rounds; best round {best}")
    assert best is not None and rounds < 1000
    history = model.train_state.history
    assert len(history) == rounds == best + 1 + 5  # stopped `patience` rounds after the best
    val_loss = [h["val_loss"] for h in history]
    assert int(np.argmin(val_loss)) == best
    assert model.train_state.progress["best_iteration"] == best
    x = np.asarray(classification_data(seed=1).peek()[0])
    probs = np.asarray(model.eval(classification_data(seed=1)).peek()[0])
    np.testing.assert_array_equal(
        probs, model.model.predict_proba(x, iteration_range=(0, best + 1)))
    assert not np.array_equal(probs, model.model.predict_proba(x, iteration_range=(0, rounds)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    loaded = load_object(io.BytesIO(_saved(model)))
    assert loaded.best_iteration == best
    np.testing.assert_array_equal(np.asarray(loaded.eval(classification_data(seed=1)).peek()[0]),
                                  probs)


def _saved(model: XGBoostTrainable) -> bytes:
    buf = io.BytesIO()
    save_object(model, buf)
    return buf.getvalue()


def test_early_stopping_on_a_named_metric_to_maximize() -> None:
    binary = classification_data().map_batches(lambda b: (b[0], (b[1] > 0).astype(np.int64)))
    spec = stopping_spec(patience=3, monitor="val_auc", mode="max")
    model = XGBoostTrainable("classifier", spec, n_estimators=500, learning_rate=0.5)
    model.train(binary)
    history = model.train_state.history
    assert "val_auc" in history[0] and len(history) < 500
    best = model.best_iteration
    assert best is not None and history[best]["val_auc"] == max(h["val_auc"] for h in history)
    assert model.eval(binary).peek()[0].shape == (600, 2)


def test_val_loss_is_the_metric_early_stopping_watched_not_the_last_one() -> None:
    """With ``eval_metric=["logloss", "error"]`` and ``monitor="val_logloss"``, ``val_loss``
    held ``val_error`` (the last metric) in every round, so its best round was not the one
    early stopping chose (found by review)."""
    binary = classification_data().map_batches(lambda b: (b[0], (b[1] > 0).astype(np.int64)))
    spec = stopping_spec(patience=5, monitor="val_logloss")
    model = XGBoostTrainable("classifier", spec, n_estimators=300, learning_rate=0.3,
                             max_depth=3, eval_metric=["logloss", "error"])
    model.train(binary)
    history = model.train_state.history
    assert all(h["val_loss"] == h["val_logloss"] and h["loss"] == h["logloss"] for h in history)
    assert any(h["val_loss"] != h["val_error"] for h in history)
    assert int(np.argmin([h["val_loss"] for h in history])) == model.best_iteration


@pytest.mark.parametrize("labels", [3, 2])
def test_early_stopping_on_val_accuracy_watches_xgboosts_error(labels: int) -> None:
    """A TrainSpec shared with Keras and torch monitors val_accuracy: XGBoost failed with
    "Unknown metric function accuracy" deep in its traceback."""
    data = classification_data().map_batches(lambda b: (b[0], b[1] % labels))
    spec = stopping_spec(patience=3, monitor="val_accuracy")
    model = XGBoostTrainable("classifier", spec, n_estimators=200, learning_rate=0.5)
    model.train(data)
    history = model.train_state.history
    error = "val_merror" if labels == 3 else "val_error"
    assert all(h["val_accuracy"] == pytest.approx(1 - h[error]) for h in history)
    best = model.best_iteration
    assert best is not None and len(history) < 200
    assert history[best]["val_accuracy"] == max(h["val_accuracy"] for h in history)


def test_labels_the_training_rows_lack_and_a_wrong_num_class_are_refused_with_the_fix() -> None:
    """XGBoost's own errors ("label must be in [0, num_class)", "Check failed:
    info.labels.Size() == preds.Size()") named neither the split nor the fix."""
    from dryml.data import NumpyDataset

    x, y = (np.asarray(a) for a in classification_data().numpy().peek())
    valid = NumpyDataset((x[:10], np.full(10, 3)), supervised=True)
    model = XGBoostTrainable("classifier", n_estimators=2)
    with pytest.raises(ConfigurationError, match=r"holds the label\(s\) \[3\] that the "
                                                 "training rows lack"):
        model.train(NumpyDataset((x, y), supervised=True), valid)
    wrong = XGBoostTrainable("classifier", n_estimators=2, num_class=2)
    with pytest.raises(ConfigurationError, match="num_class=2 with two classes.*leave num_class "
                                                 "out, or use objective='multi:softprob'"):
        wrong.train(NumpyDataset((x, y % 2), supervised=True))


def test_a_multiclass_objective_on_two_classes_trains() -> None:
    """multi:softprob on binary labels failed: "value 0 for Parameter num_class"; with
    early stopping on val_accuracy it must watch merror (two scores a row)."""
    binary = classification_data().map_batches(lambda b: (b[0], (b[1] > 0).astype(np.int64)))
    model = XGBoostTrainable("classifier", stopping_spec(monitor="val_accuracy"),
                             n_estimators=5, objective="multi:softprob")
    model.train(binary)
    assert "val_merror" in model.train_state.history[0]
    probs = np.asarray(model.eval(binary).peek()[0])
    assert probs.shape == (600, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_same_seed_same_predictions_other_seed_differs() -> None:
    test = regression_data(seed=1)
    preds = []
    for seed in (4, 4, 5):
        model = XGBoostTrainable("regressor", TrainSpec(seed=seed), n_estimators=30,
                                 subsample=0.7, colsample_bynode=0.5)
        model.train(regression_data())
        preds.append(np.asarray(model.eval(test).peek()[0]))
    np.testing.assert_array_equal(preds[0], preds[1])
    assert not np.array_equal(preds[0], preds[2])


_PROGRESS = """
from dryml.models import TrainSpec
from dryml.testing.trainers import classification_data
from dryml_xgboost.models import XGBoostTrainable
XGBoostTrainable("classifier", TrainSpec(validation_split=0.2), n_estimators=7).train(
    classification_data(n=200))
"""


def test_progress_bar_shows_rounds_and_metrics_on_stderr() -> None:
    done = subprocess.run([sys.executable, "-c", _PROGRESS], capture_output=True, text=True,
                          check=True, timeout=300)
    # no terminal: plain lines from dryml.progress, labelled like every backend's
    lines = [line for line in done.stderr.splitlines() if " · xgboost: " in line]
    assert lines and lines[0].startswith("XGBoostTrainable classifier "), done.stderr
    assert lines[0].endswith(" · xgboost: started (7 rounds)"), lines
    assert "finished at round 7/7" in lines[-1] and "val_mlogloss=" in lines[-1], lines


def test_a_training_that_raises_ends_its_progress_line_saying_so() -> None:
    """XGBoost skips after_training when a callback raises: the line said "ended at round
    3/7", as if training had stopped there on its own."""
    script = """
from dryml.models import TrainSpec
from dryml.testing.trainers import classification_data
from dryml_xgboost.models import XGBoostTrainable

class Crashes(XGBoostTrainable):
    def on_epoch_end(self, logs):
        if logs["round"] == 3:
            raise RuntimeError("simulated crash")

try:
    Crashes("classifier", TrainSpec(validation_split=0.2), n_estimators=7).train(
        classification_data(n=200))
except RuntimeError as exc:
    print("raised", exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=300)
    assert "raised simulated crash" in done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if " · xgboost: " in line]
    assert lines and "failed: RuntimeError at round 3/7" in lines[-1], lines


def test_parameters_the_trainable_sets_itself_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="EarlyStopping"):
        XGBoostTrainable(early_stopping_rounds=5)
    with pytest.raises(ConfigurationError, match="regressor"):
        XGBoostTrainable("ranker")


def test_definition_builds_without_importing_xgboost() -> None:
    code = (
        "import json, sys\n"
        "from dryml import ObjectDef\n"
        "from dryml_xgboost.models import XGBoostTrainable\n"
        "m = XGBoostTrainable('regressor', n_estimators=5, max_depth=2)\n"
        "d = ObjectDef.from_dict(json.loads(json.dumps(m.definition().to_dict())))\n"
        "assert d.build().xgb_params == {'n_estimators': 5, 'max_depth': 2}\n"
        "assert 'xgboost' not in sys.modules and 'sklearn' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


_NO_SKLEARN = """
import sys
sys.modules["sklearn"] = None  # as if scikit-learn were not installed
from dryml.errors import BackendUnavailableError
from dryml.testing.trainers import classification_data
from dryml_xgboost.models import XGBoostTrainable
try:
    XGBoostTrainable(n_estimators=2).fit(classification_data(n=50), None)
except BackendUnavailableError as exc:
    print(exc)
"""


def test_missing_scikit_learn_names_the_extra_to_install() -> None:
    done = subprocess.run([sys.executable, "-c", _NO_SKLEARN], capture_output=True, text=True,
                          check=True, timeout=120)
    assert "pip install 'dryml-xgboost[sklearn]'" in done.stdout


def test_trainer_record_names_the_public_class() -> None:
    from dryml.plugins import get_plugin_manager
    from dryml.records import load_ref

    (record,) = [r for p, r in get_plugin_manager().records("dryml_trainers") if p == "xgboost"]
    assert (record.name, record.framework) == ("xgboost.trainable", "xgboost")
    assert load_ref(record.impl) is XGBoostTrainable


@pytest.mark.parametrize("params", [
    {"eval_metric": ["mlogloss", "merror"]},
    {"eval_metric": "logloss", "spec": stopping_spec(patience=3, monitor="val_auc",
                                                      mode="max")},
], ids=["list", "monitor-adds-a-metric"])
def test_a_list_of_eval_metrics_trains_and_saves(params: dict[str, Any]) -> None:
    """Found by review: the model trained, then failed to come back from its worker
    (SerializationError: 'Unknown metric function ['mlogloss', 'merror']') and was lost."""
    binary = classification_data().map_batches(lambda b: (b[0], (b[1] > 0).astype(np.int64)))
    data = binary if "spec" in params else classification_data()
    spec = params.pop("spec", TrainSpec(validation_split=0.25, seed=0))
    model = XGBoostTrainable("classifier", spec, n_estimators=20, **params)
    model.train(data)
    assert model.trained
    loaded = load_object(io.BytesIO(_saved(model)))
    np.testing.assert_array_equal(np.asarray(loaded.eval(data).peek()[0]),
                                  np.asarray(model.eval(data).peek()[0]))


def test_patience_zero_stops_at_the_first_round_without_improvement() -> None:
    """Found by review: XGBoost stopped after one round with patience=0 (its callback stops
    after `rounds` rounds without improvement, 0 of them), where the other backends go on
    until a round does not improve; 0 acts as 1 everywhere."""
    rounds = []
    for patience in (0, 1):
        model = XGBoostTrainable("classifier", stopping_spec(patience=patience),
                                 n_estimators=300, learning_rate=0.3)
        model.train(classification_data())
        rounds.append(model.train_state.progress["rounds"])
    assert rounds[0] == rounds[1] > 2


def test_a_classifier_objective_that_gives_no_probabilities_is_refused() -> None:
    """Found by review: objective='binary:logitraw' trained, and its margins (-4.8 to 5.8)
    were scored as probabilities, log_loss and all."""
    with pytest.raises(ConfigurationError, match="must give class probabilities"):
        XGBoostTrainable("classifier", objective="binary:logitraw")
    XGBoostTrainable("classifier", objective="binary:logistic")
    XGBoostTrainable("regressor", objective="reg:squarederror")


def test_early_stopping_uses_a_validation_dataset_passed_to_train() -> None:
    """Found by review: TrainSpec refused early stopping without validation_split, though the
    docs (and the trainables) take a validation Dataset passed to train()."""
    from dryml.context import shutdown_workers
    from dryml.data import NumpyDataset

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    spec = TrainSpec(early_stopping=EarlyStopping(patience=2), seed=0)
    model = XGBoostTrainable("classifier", spec, n_estimators=60)
    with pytest.raises(ConfigurationError, match="pass a validation Dataset"):
        model.train(NumpyDataset((x, y), supervised=True))
    try:
        model.train(NumpyDataset((x[:300], y[:300]), supervised=True),
                    NumpyDataset((x[300:], y[300:]), supervised=True))
    finally:
        shutdown_workers()
    assert model.trained and "val_loss" in model.train_state.history[-1]


def test_val_loss_standing_for_a_metric_to_maximize_keeps_its_best_round() -> None:
    """monitor="val_loss" watches the last eval_metric; with "auc" early stopping minimized
    it, and kept the worst round (found by review)."""
    binary = classification_data().map_batches(lambda b: (b[0], (b[1] > 0).astype(np.int64)))
    model = XGBoostTrainable("classifier", stopping_spec(patience=5), n_estimators=300,
                             learning_rate=0.3, max_depth=3, eval_metric="auc")
    model.train(binary)
    history = model.train_state.history
    best = model.best_iteration
    assert best is not None and history[best]["val_loss"] == max(h["val_loss"] for h in history)


def test_early_stopping_monitors_only_what_xgboost_can_watch() -> None:
    """monitor="loss" (the training loss in Keras and torch) silently watched the validation
    metric, and an unknown name (val_f1) raised XGBoost's C++ error with its stack trace."""
    for monitor in ("loss", "accuracy"):
        model = XGBoostTrainable("classifier", stopping_spec(monitor=monitor), n_estimators=20)
        with pytest.raises(ConfigurationError, match=f"monitor='{monitor}' .*has no meaning "
                                                     "here: monitor 'val_loss'"):
            model.train(classification_data(n=200))
    for monitor in ("val_f1", "val_acc"):
        model = XGBoostTrainable("classifier", stopping_spec(monitor=monitor), n_estimators=20)
        with pytest.raises(ConfigurationError, match=f"XGBoost has no metric .*monitor="
                                                     f"'{monitor}'.*val_accuracy") as info:
            model.train(classification_data(n=200))
        assert "Stack trace" not in str(info.value)


def test_early_stopping_takes_a_first_nan_round_for_no_improvement() -> None:
    """Found by the metrics audit: XGBoost took a first round's NaN score for the best, never
    improved on it, stopped after `rounds` and predicted with round 0, where dryml's
    EarlyStopping says a NaN round is no improvement."""
    import math

    import xgboost

    from dryml_xgboost._models_util import EarlyStopping as XGBoostEarlyStopping

    booster = xgboost.Booster()
    stopper = XGBoostEarlyStopping(rounds=2, metric_name="rmse", maximize=False,
                                   save_best=False)
    log: dict[str, dict[str, list[float]]] = {"validation_0": {"rmse": []},
                                              "validation_1": {"rmse": []}}
    for round_, value in enumerate([math.nan, 1.0, 0.5, math.nan, 0.4]):
        log["validation_0"]["rmse"].append(1.0)
        log["validation_1"]["rmse"].append(value)
        assert not stopper.after_iteration(booster, round_, log), round_
    assert (booster.attr("best_score"), booster.attr("best_iteration")) == ("0.4", "4")


def test_a_score_nan_in_every_round_leaves_no_best_round() -> None:
    """Found by review: round 0 stayed the best of a score NaN in every round, and the model
    predicted with round 0 alone; no round is best then, and every round predicts."""
    import math

    import xgboost

    from dryml_xgboost._models_util import EarlyStopping as XGBoostEarlyStopping

    booster = xgboost.Booster()
    stopper = XGBoostEarlyStopping(rounds=2, metric_name="rmse", maximize=False,
                                   save_best=False)
    log: dict[str, dict[str, list[float]]] = {"validation_0": {"rmse": []},
                                              "validation_1": {"rmse": []}}
    for round_ in range(3):
        log["validation_0"]["rmse"].append(1.0)
        log["validation_1"]["rmse"].append(math.nan)
        stopped = stopper.after_iteration(booster, round_, log)
    assert stopped
    stopper.after_training(booster)
    assert booster.attr("best_iteration") is None and booster.attr("best_score") is None
