"""dryml-tf's KerasTrainable: the trainer conformance suite, early stopping, determinism,
progress output, probabilities, components."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")

from dryml import ObjectDef, load_object, metrics, save_object
from dryml.context import shutdown_workers
from dryml.data import NumpyDataset
from dryml.errors import ConfigurationError
from dryml.models import EarlyStopping, TrainSpec, split_validation
from dryml.repo import Selector
from dryml.testing.trainers import (
    TrainerCase,
    TrainerConformance,
    classification_data,
    regression_data,
)
from dryml_tf.models import KerasTrainable, Loss, Metric, Network, Optimizer, Sequential


def mlp(outputs: int = 3, width: int = 16, dropout: float = 0.0) -> Sequential:
    layers: list[Any] = [("Dense", {"units": width, "activation": "relu"})]
    if dropout:
        layers.append(("Dropout", {"rate": dropout}))
    return Sequential([*layers, ("Dense", {"units": outputs})], input_shape=(4,))


def build_classifier() -> KerasTrainable:
    return KerasTrainable(mlp(), Optimizer("Adam", learning_rate=1e-2),
                          Loss("SparseCategoricalCrossentropy", from_logits=True),
                          TrainSpec(epochs=8, batch_size=32, seed=0))


def build_regressor() -> KerasTrainable:
    return KerasTrainable(mlp(outputs=1), Optimizer("Adam", learning_rate=1e-2),
                          Loss("MeanSquaredError"), TrainSpec(epochs=15, batch_size=32, seed=0),
                          task="regressor", metrics=[Metric("MeanAbsoluteError")])


class TestKerasTrainers(TrainerConformance):
    cases: ClassVar[list[TrainerCase]] = [
        TrainerCase("keras_classifier", build_classifier, "classifier", min_score=0.95,
                    component=Selector(Optimizer, args=("Adam",),
                                       kwargs={"learning_rate": 1e-2})),
        TrainerCase("keras_regressor", build_regressor, "regressor", min_score=0.95,
                    component=Selector(Loss, args=("MeanSquaredError",))),
    ]


def predictions(model: KerasTrainable, data: Any | None = None) -> np.ndarray:
    data = classification_data(seed=1) if data is None else data
    return np.asarray(model.eval(data).peek()[0])


def with_validation(epochs: int, early: EarlyStopping | None = None, seed: int = 0,
                    net: Any = None) -> KerasTrainable:
    return KerasTrainable(net or mlp(), Optimizer("Adam", learning_rate=2e-2),
                          spec=TrainSpec(epochs=epochs, batch_size=32, validation_split=0.25,
                                         early_stopping=early, seed=seed))


def test_predictions_are_probabilities_and_values() -> None:
    clf = with_validation(2)  # default loss: SparseCategoricalCrossentropy on logits
    clf.train(classification_data())
    probs = predictions(clf)
    assert probs.shape == (600, 3) and probs.dtype == np.float32
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    history = clf.train_state.history
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history[-1])
    # a network ending in a softmax, with a loss on probabilities: outputs as they are
    softmax = Sequential([*mlp().layers[:-1], ("Dense", {"units": 3, "activation": "softmax"})],
                         input_shape=(4,))
    plain = KerasTrainable(softmax, Optimizer("Adam", learning_rate=2e-2),
                           Loss("sparse_categorical_crossentropy"), TrainSpec(epochs=3))
    plain.train(classification_data())
    assert metrics.accuracy(plain, classification_data(seed=1)) > 0.9
    np.testing.assert_allclose(predictions(plain).sum(axis=1), 1.0, rtol=1e-5)


def test_early_stopping_stops_early_and_restores_the_best_weights() -> None:
    model = with_validation(100, EarlyStopping(patience=2, min_delta=1e-3))
    model.train(classification_data())
    history, progress = model.train_state.history, model.train_state.progress
    best = progress["best_epoch"]
    assert len(history) < 100, "early stopping never stopped"
    assert progress["stopped_epoch"] == len(history) == progress["epoch"]
    best_loss = history[best - 1]["val_loss"]
    assert best_loss == min(h["val_loss"] for h in history[:best])
    assert all(h["val_loss"] > best_loss - 1e-3 for h in history[best:])  # none better by min_delta
    # the weights are those after the best epoch: equal to a training that ends there
    ends_at_best = with_validation(best)
    ends_at_best.train(classification_data())
    assert np.array_equal(predictions(model), predictions(ends_at_best))
    assert ends_at_best.train_state.history == history[:best]
    last_epoch = with_validation(len(history))
    last_epoch.train(classification_data())
    assert not np.array_equal(predictions(model), predictions(last_epoch))


def test_early_stopping_on_an_unknown_metric_says_which_exist() -> None:
    model = with_validation(3, EarlyStopping(monitor="val_f1"))
    with pytest.raises(ConfigurationError, match="val_accuracy"):
        model.train(classification_data(n=100))


def test_training_is_deterministic_with_a_seed() -> None:
    runs = []
    for seed in (3, 3, 4):
        model = with_validation(3, EarlyStopping(patience=5), seed=seed, net=mlp(dropout=0.3))
        model.train(classification_data())
        runs.append((predictions(model), model.train_state.history))
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0], runs[2][0])


class Checkpointing(KerasTrainable):
    """Saves itself after every epoch and crashes after ``crash_after`` epochs."""

    def __init__(self, *args: Any, path: str, crash_after: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path, self.crash_after = path, crash_after

    def on_epoch_end(self, logs: dict[str, float]) -> None:
        save_object(self, self.path)
        if logs["epoch"] == self.crash_after:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize(("epochs", "crash_after"), [(6, 3), (40, None)])
def test_training_resumes_from_a_mid_training_checkpoint(tmp_path: Path, epochs: int,
                                                         crash_after: int | None) -> None:
    spec = TrainSpec(epochs=epochs, batch_size=32, validation_split=0.25,
                     early_stopping=EarlyStopping(patience=2, min_delta=1e-3), seed=1)
    parts = (mlp(dropout=0.2), Optimizer("Adam", learning_rate=2e-2), None, spec)
    reference = KerasTrainable(*parts)
    reference.train(classification_data())
    ran = reference.train_state.progress["epoch"]
    # (40, None): early stopping ends the run; resume from the checkpoint of the epoch before
    crash_after = crash_after or ran - 1
    path = tmp_path / "checkpoint.dry"
    crashing = Checkpointing(*parts, path=str(path), crash_after=crash_after)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.train(classification_data())
    resumed = load_object(path, trust=[__name__])
    assert resumed.train_state.status == "training"
    assert resumed.train_state.progress["epoch"] == crash_after
    resumed.crash_after = None
    resumed.train(classification_data())
    assert resumed.trained
    assert resumed.train_state.history == reference.train_state.history
    assert resumed.train_state.progress == reference.train_state.progress
    assert np.array_equal(predictions(resumed), predictions(reference))


def test_progress_bar_shows_epochs_loss_and_validation_metric() -> None:
    script = textwrap.dedent("""
        import sys
        from dryml.models import TrainSpec
        from dryml.testing.trainers import classification_data
        from dryml_tf.models import KerasTrainable, Sequential
        net = Sequential([("Dense", {"units": 3})], input_shape=(4,))
        model = KerasTrainable(net, spec=TrainSpec(epochs=4, validation_split=0.2))
        model.train(classification_data(n=200))
        print("trained", model.trained)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TQDM_DISABLE": ""})
    assert done.returncode == 0, done.stderr
    assert "trained True" in done.stdout
    # no terminal: plain lines from dryml.progress, labelled like every backend's
    lines = [line for line in done.stderr.splitlines() if " · tf: " in line]
    assert lines and lines[0].startswith("KerasTrainable classifier "), done.stderr
    assert lines[0].endswith(" · tf: started (4 epochs)"), lines
    assert "finished at epoch 4/4" in lines[-1], lines
    assert all(f"{name}=" in lines[-1] for name in ("loss", "val_loss", "val_accuracy")), lines


def test_definitions_and_trainer_records_import_no_framework() -> None:
    script = textwrap.dedent("""
        import json, sys
        from dryml import ObjectDef
        from dryml.models import TrainSpec
        from dryml_tf.models import KerasTrainable, Loss, Metric, Optimizer, Sequential
        net = Sequential([("Dense", {"units": 3})], input_shape=(4,))
        model = KerasTrainable(net, Optimizer("SGD", learning_rate=0.1, momentum=0.9),
                               Loss("SparseCategoricalCrossentropy", from_logits=True),
                               TrainSpec(epochs=2), metrics=["accuracy", Metric("AUC")])
        d = ObjectDef.from_dict(json.loads(json.dumps(model.definition().to_dict())))
        rebuilt = d.build()
        assert rebuilt.optimizer.kwargs == {"learning_rate": 0.1, "momentum": 0.9}
        assert rebuilt.model.input_shape == (4,) and rebuilt.metrics[1].name == "AUC"
        from dryml.plugins import get_plugin_manager
        from dryml.records import load_ref
        records = {r.name: r for _, r in get_plugin_manager().records("dryml_trainers")
                   if r.package == "dryml-tf"}
        assert set(records) == {"tf.trainable", "tf.sequential", "tf.network", "tf.optimizer",
                                "tf.loss", "tf.metric", "tf.procedure", "tf.mixup",
                                "tf.gradient_accumulation"}, sorted(records)
        assert load_ref(records["tf.trainable"].impl) is KerasTrainable
        assert all(r.framework == "tf" for r in records.values())
        bad = [m for m in ("tensorflow", "keras") if m in sys.modules]
        assert not bad, f"building a definition or listing trainers imported {bad}"
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_bad_components_are_refused_with_a_fix() -> None:
    with pytest.raises(ConfigurationError, match="pair such as"):
        Sequential(["Dense"], input_shape=(4,))
    with pytest.raises(ConfigurationError, match="input_shape"):
        Sequential([("Dense", {"units": 1})], input_shape=4)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="runs code"):
        Sequential([("Lambda", {"function": "print"})], input_shape=(4,))
    with pytest.raises(ConfigurationError, match="task"):
        KerasTrainable(mlp(), task="ranker")
    with pytest.raises(ConfigurationError, match="metrics"):
        KerasTrainable(mlp(), metrics="accuracy")
    model = KerasTrainable(Sequential([("NoSuchLayer", {})], input_shape=(4,)))
    with pytest.raises(ConfigurationError, match="NoSuchLayer"):
        model.train(classification_data(n=50))


class Residual(Network):
    """A functional Keras model (not a Sequential)."""

    def __init__(self, width: int) -> None:
        self.width = width

    def build(self) -> Any:
        import keras

        inp = keras.Input((4,))
        h = keras.layers.Dense(self.width, activation="relu")(inp)
        h = keras.layers.Add()([h, keras.layers.Dense(self.width, activation="relu")(h)])
        return keras.Model(inp, keras.layers.Dense(3)(h))


def test_custom_network_from_an_object_definition(tmp_path: Path) -> None:
    model = KerasTrainable(ObjectDef(Residual, 8), Optimizer("Adam", learning_rate=2e-2),
                           spec=TrainSpec(epochs=5, seed=2))  # built in the worker
    model.train(classification_data())
    assert metrics.accuracy(model, classification_data(seed=1)) > 0.95
    path = tmp_path / "custom.dry"
    save_object(model, path)
    loaded = load_object(path, trust=[__name__])
    assert np.array_equal(predictions(loaded), predictions(model))


def test_regressor_predicts_one_value_per_example() -> None:
    model = KerasTrainable(mlp(outputs=1), spec=TrainSpec(epochs=2), task="regressor")
    assert model.loss.name == "MeanSquaredError" and model.metrics == ("mae",)
    model.train(regression_data(n=200))
    values = predictions(model, regression_data(seed=1))
    assert values.shape == (600,) and values.dtype == np.float32
    assert [h["epoch"] for h in model.train_state.history] == [1, 2]
    assert "mae" in model.train_state.history[-1]


def _binary(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(np.float32)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z.astype(np.float64)))  # type: ignore[no-any-return]


def test_a_one_dimensional_logit_output_is_one_sigmoid_per_row() -> None:
    """Found by review: a network ending in Reshape(()) (one logit per row) got a softmax
    over the batch: a row's probability depended on the rest of the batch."""
    x, y = _binary()
    net = Sequential([("Dense", {"units": 8, "activation": "relu"}), ("Dense", {"units": 1}),
                      ("Reshape", {"target_shape": ()})], input_shape=(4,))
    model = KerasTrainable(net, Optimizer("Adam", learning_rate=1e-2),
                           Loss("BinaryCrossentropy", from_logits=True),
                           TrainSpec(epochs=3, seed=0))
    try:
        model.train(NumpyDataset((x, y), supervised=True))
        p = model.predict(x[:6])
        alone = model.predict(x[:1])
        logits = np.asarray(model.keras_model(x[:6]))
    finally:
        shutdown_workers()
    assert p.shape == (6, 2)
    np.testing.assert_allclose(p[:, 1], _sigmoid(logits), rtol=1e-5)
    np.testing.assert_allclose(alone[0], p[0], rtol=1e-6)


def _trained_outputs(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``model`` trained on (x, y): its predictions for x, and the network's raw outputs."""
    try:
        model.train(NumpyDataset((x, y), supervised=True))
        return model.predict(x), np.asarray(model.keras_model(x))
    finally:
        shutdown_workers()


@pytest.mark.parametrize(("last", "loss"), [
    (("Dense", {"units": 1, "activation": "sigmoid"}), "BinaryCrossentropy"),
    (("Dense", {"units": 2, "activation": "softmax"}), "SparseCategoricalCrossentropy"),
])
def test_a_final_activation_with_a_from_logits_loss_is_not_applied_twice(
        last: Any, loss: str) -> None:
    """Found by review: Keras trains such a model on the logits before the activation (and
    only warns), so the network's outputs are the probabilities; predict applied the
    sigmoid or softmax again (every probability in [0.27, 0.73])."""
    x, y = _binary()
    net = Sequential([("Dense", {"units": 16, "activation": "relu"}), last], input_shape=(4,))
    model = KerasTrainable(net, Optimizer("Adam", learning_rate=0.05),
                           Loss(loss, from_logits=True), TrainSpec(epochs=5, seed=0))
    p, out = _trained_outputs(model, x, y)
    out = out.astype(np.float64)
    expected = np.concatenate([1 - out, out], axis=1) if out.shape[1] == 1 else out
    np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-7)


def test_accuracy_of_a_binary_loss_taking_logits_thresholds_the_logits_at_zero() -> None:
    """Found by review: Keras' "accuracy" became BinaryAccuracy(threshold=0.5) on logits, so
    the history's val_accuracy (and early stopping on it) counted logit > 0.5."""
    x, y = _binary()
    net = Sequential([("Dense", {"units": 1})], input_shape=(4,))
    spec = TrainSpec(epochs=2, seed=0, validation_split=0.3)
    model = KerasTrainable(net, Optimizer("Adam", learning_rate=1e-3),
                           Loss("BinaryCrossentropy", from_logits=True), spec)
    try:
        model.train(NumpyDataset((x, y), supervised=True))
        logged = model.train_state.history[-1]["val_accuracy"]
        (_, _), (x_valid, y_valid) = split_validation(x, y, 0.3, spec.seed_for(model))
        logits = np.asarray(model.keras_model(x_valid))[:, 0]
    finally:
        shutdown_workers()
    assert logged == pytest.approx(float(np.mean((logits > 0) == (y_valid > 0.5))), abs=1e-6)


def test_mixed_precision_logits_give_float32_probabilities() -> None:
    """Found by review: the softmax ran in float16 (eps ~1e-3), and log_loss came out 6%
    higher than on a float32 softmax of the same logits."""
    x, _ = _binary()
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    net = Sequential([("Dense", {"units": 8, "activation": "relu", "dtype": "mixed_float16"}),
                      ("Dense", {"units": 3, "dtype": "mixed_float16"})], input_shape=(4,))
    model = KerasTrainable(net, Optimizer("Adam", learning_rate=0.05), None,
                           TrainSpec(epochs=2, seed=0))
    p, z = _trained_outputs(model, x, y)
    z = z.astype(np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    assert p.dtype == np.float32
    np.testing.assert_allclose(p, e / e.sum(axis=1, keepdims=True), rtol=1e-6, atol=1e-7)


def test_a_multilabel_network_with_a_binary_loss_gives_each_output_its_sigmoid() -> None:
    """With BinaryCrossentropy(from_logits=True) and several outputs (multi-hot targets),
    predict took a softmax over the outputs (found by the metrics audit): two labels both
    present could not both pass 0.5. Each output gets its own sigmoid now."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0], axis=1).astype(np.float32)
    net = Sequential([("Dense", {"units": 2})], input_shape=(4,))
    model = KerasTrainable(net, Optimizer("Adam", learning_rate=0.05),
                           Loss("BinaryCrossentropy", from_logits=True),
                           TrainSpec(epochs=10, seed=0))
    p, logits = _trained_outputs(model, x, y)
    np.testing.assert_allclose(p, _sigmoid(logits), rtol=1e-5)
    both = y.all(axis=1)
    assert ((p[both] > 0.5).all(axis=1)).mean() > 0.9


def test_a_plain_value_in_place_of_the_keras_model_is_a_format_error() -> None:
    """A file could hold a plain value where the Keras model is kept: it loaded, and the first
    predict failed with a raw error (found by the load-paths audit)."""
    import io

    from dryml.errors import FormatError
    from dryml.testing.serializers import rewrite_manifest

    model = build_classifier()
    x, y = _binary()
    try:
        model.train(NumpyDataset((x, y), supervised=True))
    finally:
        shutdown_workers()
    buffer = io.BytesIO()
    save_object(model, buffer)

    def edit(manifest: dict[str, Any]) -> None:
        manifest["objects"][-1]["state"]["model"] = {"value": 5}

    loaded = load_object(io.BytesIO(rewrite_manifest(buffer.getvalue(), edit)))
    for _ in range(2):  # the stored state stays: the second use says the same (found by review)
        with pytest.raises(FormatError, match="stored 'model' of this KerasTrainable is a int, "
                                              "not a Keras model"):
            loaded.predict(x[:2])


def _three_classes(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    data = classification_data(n=n)
    x, y = (np.asarray(a) for a in data.numpy().peek())
    return x, y


class NestedHead(Network):
    """A body and a classification head ending in a softmax, as two sub-models (the usual
    transfer-learning layout)."""

    def build(self) -> Any:
        import keras

        body = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu")])
        head = keras.Sequential([keras.Input((16,)), keras.layers.Dense(3, activation="softmax")])
        return keras.Sequential([keras.Input((4,)), body, head])


def test_a_softmax_inside_a_nested_model_is_not_applied_twice() -> None:
    """predict looked at the last layer only: the head's softmax got a second one, its
    probabilities flattened."""
    x, y = _three_classes()
    model = KerasTrainable(NestedHead(), Optimizer("Adam", learning_rate=0.05),
                           Loss("SparseCategoricalCrossentropy", from_logits=True),
                           TrainSpec(epochs=3, seed=0))
    p, out = _trained_outputs(model, x, y)
    np.testing.assert_allclose(p, out, rtol=1e-5, atol=1e-7)


def test_several_sigmoids_with_a_categorical_loss_predict_the_softmax_keras_trained() -> None:
    """Keras trains a categorical cross-entropy on the logits under the sigmoids; predict
    gave the sigmoids, rows that do not sum to 1 (and a log_loss better than the model's)."""
    x, y = _three_classes()
    net = mlp(outputs=3)
    net_sigmoid = Sequential([*net.layers[:-1], ("Dense", {"units": 3, "activation": "sigmoid"})],
                             input_shape=(4,))
    model = KerasTrainable(net_sigmoid, Optimizer("Adam", learning_rate=0.05),
                           Loss("SparseCategoricalCrossentropy"), TrainSpec(epochs=3, seed=0))
    logits = KerasTrainable(net, Optimizer("Adam", learning_rate=0.05),
                            Loss("SparseCategoricalCrossentropy", from_logits=True),
                            TrainSpec(epochs=3, seed=0))
    p, _ = _trained_outputs(model, x, y)
    reference, _ = _trained_outputs(logits, x, y)  # the same training, on plain logits
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(p, reference, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("units", "loss", "labels", "message"), [
    (3, Loss("SparseCategoricalCrossentropy"), None,
     r"takes probabilities \(from_logits=False\), but the network's outputs are not"),
    (1, Loss("BinaryCrossentropy"), "binary",
     r"takes probabilities \(from_logits=False\), but the network's outputs are not"),
    (1, Loss("SparseCategoricalCrossentropy", from_logits=True), "binary",
     r"needs one output per class.*Loss\('BinaryCrossentropy', from_logits=True\)"),
    (3, Loss("SparseCategoricalCrossentropy", from_logits=True), "1..3",
     r"takes class indices 0..2 .*values from 1 to 3: number the classes from 0"),
    (1, Loss("BinaryCrossentropy", from_logits=True), "-1/+1",
     r"takes targets in \[0, 1\] .*values from -1 to 1: map them to 0 and 1"),
])
def test_a_classifier_whose_loss_cannot_read_its_outputs_or_labels_is_refused(
        units: int, loss: Loss, labels: str | None, message: str) -> None:
    """Each trained without an error: linear outputs read as probabilities, one output with
    a per-class loss, labels 1..k, or -1/+1 labels on a negative loss."""
    x, y = _three_classes()
    y = {None: y, "binary": (y > 0).astype(np.int64), "1..3": y + 1,
         "-1/+1": np.where(y > 0, 1, -1)}[labels]
    model = KerasTrainable(mlp(outputs=units), loss=loss, spec=TrainSpec(epochs=1, seed=0))
    try:
        with pytest.raises(ConfigurationError, match=message):
            model.train(NumpyDataset((x, y), supervised=True))
    finally:
        shutdown_workers()


def test_labels_a_sparse_loss_ignores_are_not_refused() -> None:
    x, y = _three_classes()
    y = y.copy()
    y[:20] = -1  # padding the loss skips
    model = KerasTrainable(mlp(), loss=Loss("SparseCategoricalCrossentropy", from_logits=True,
                                            ignore_class=-1), spec=TrainSpec(epochs=1, seed=0))
    try:
        model.train(NumpyDataset((x, y), supervised=True))
    finally:
        shutdown_workers()
    assert model.trained


def test_early_stopping_auto_takes_the_direction_keras_knows_for_a_metric() -> None:
    """A CosineSimilarity metric (better higher) was taken for a loss by dryml's name rule:
    the model kept its worst epoch (0.61 where 0.9999 was reached). Keras' own direction for
    the compiled metric decides now, dryml's name rule where Keras has none."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 2))).astype(np.float32)
    for name in ("cosine_similarity",):
        spec = TrainSpec(epochs=8, batch_size=32, validation_split=0.25, seed=0,
                         early_stopping=EarlyStopping(patience=50, monitor=f"val_{name}"))
        model = KerasTrainable(Sequential([("Dense", {"units": 2})], input_shape=(4,)),
                               Optimizer("Adam", learning_rate=0.05), spec=spec,
                               task="regressor",
                               metrics=[Metric("CosineSimilarity", axis=-1)])
        model.train(NumpyDataset((x, y), supervised=True))
        seen = [h[f"val_{name}"] for h in model.train_state.history]
        assert seen[-1] > seen[0]  # it improves: the best epoch is a late one
        assert model.train_state.progress["best"] == pytest.approx(max(seen))


def test_a_training_that_raises_ends_its_progress_line_saying_so() -> None:
    """Keras skips on_train_end when a callback raises: the line said "ended at epoch 1/6"
    where torch says "failed: RuntimeError at epoch 3/6"."""
    script = textwrap.dedent("""
        from dryml.models import TrainSpec
        from dryml.testing.trainers import classification_data
        from dryml_tf.models import KerasTrainable, Sequential

        class Crashes(KerasTrainable):
            def on_epoch_end(self, logs):
                if logs["epoch"] == 3:
                    raise RuntimeError("simulated crash")

        net = Sequential([("Dense", {"units": 3})], input_shape=(4,))
        model = Crashes(net, spec=TrainSpec(epochs=6, validation_split=0.2))
        try:
            model.train(classification_data(n=200))
        except RuntimeError as exc:
            print("raised", exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TQDM_DISABLE": ""})
    assert "raised simulated crash" in done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if " · tf: " in line]
    assert lines and "failed: RuntimeError at epoch 3/6" in lines[-1], lines


def test_early_stopping_takes_a_first_nan_epoch_for_no_improvement() -> None:
    """Found by the metrics audit: Keras took a first epoch's NaN monitor for the best, never
    improved on it, stopped after `patience` epochs and restored that epoch's weights, where
    dryml's EarlyStopping (and the torch backend) says a NaN epoch is no improvement."""
    import math

    import keras

    from dryml_tf._models_fit import ResumableEarlyStopping

    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    stopper = ResumableEarlyStopping(None, monitor="val_loss", patience=2, mode="auto",
                                     fallback="min", restore_best_weights=True)
    stopper.set_model(net)
    net.stop_training = False
    stopper.on_train_begin()
    for epoch, value in enumerate([math.nan, 1.0, 0.5, math.nan, 0.4]):
        stopper.on_epoch_end(epoch, {"val_loss": value})
        assert not net.stop_training, epoch
    assert (stopper.best, stopper.best_epoch) == (0.4, 4)


def test_a_monitor_nan_in_every_epoch_keeps_the_last_weights_and_says_so(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Found by review: with a validation set whose every epoch's val_loss is NaN, Keras
    stopped after `patience` epochs without a word ("finished at epoch 3/10"), left no
    stopped_epoch, and restored the first epoch's weights, where torch keeps the last."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    x_valid = x[:30].copy()
    x_valid[0, 0] = np.nan
    train = NumpyDataset((x, y), supervised=True)
    valid = NumpyDataset((x_valid, y[:30]), supervised=True)

    def build(epochs: int, early: EarlyStopping | None) -> KerasTrainable:
        return KerasTrainable(Sequential([("Dense", {"units": 1})], input_shape=(3,)),
                              Optimizer("Adam", learning_rate=0.05), Loss("MeanSquaredError"),
                              spec=TrainSpec(epochs=epochs, seed=0, early_stopping=early),
                              task="regressor", dry_id="same-weights")

    stopped = build(10, EarlyStopping(patience=2))
    stopped.train(train, valid)
    assert stopped.train_state.progress["stopped_epoch"] == 2
    assert "best_epoch" not in stopped.train_state.progress
    assert "val_loss was NaN in every epoch" in capsys.readouterr().err
    two = build(2, None)  # the same model trained for two epochs, as the stopped one was
    two.train(train, valid)
    test = NumpyDataset(x[30:60])
    np.testing.assert_allclose(stopped.eval(test).peek(), two.eval(test).peek(), rtol=1e-6)
    # resumed from a checkpoint of epoch 1, it stops where the uninterrupted run did (the
    # epochs waited were not kept while no epoch was best: it ran to epoch 3; found by audit)
    path = tmp_path / "ckpt.dry"
    crashing = Checkpointing(Sequential([("Dense", {"units": 1})], input_shape=(3,)),
                             Optimizer("Adam", learning_rate=0.05), Loss("MeanSquaredError"),
                             TrainSpec(epochs=10, seed=0, early_stopping=EarlyStopping(patience=2)),
                             task="regressor", path=str(path), crash_after=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.train(train, valid)
    resumed = load_object(path)
    resumed.train(train, valid)
    assert resumed.train_state.progress["stopped_epoch"] == 2
    assert len(resumed.train_state.history) == 2
