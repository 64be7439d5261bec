"""dryml-torch's TorchTrainable: the trainer conformance suite, early stopping, determinism,
progress output, resume from a mid-training checkpoint, device, components."""

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
    pytest.importorskip("torch")

from dryml import Object, ObjectDef, load_object, save_object
from dryml.context import compute_context
from dryml.errors import ConfigurationError
from dryml.models import EarlyStopping, TrainSpec
from dryml.repo import Selector
from dryml.testing.trainers import (
    TrainerCase,
    TrainerConformance,
    classification_data,
    regression_data,
)
from dryml_torch.models import Loss, Network, Optimizer, Sequential, TorchTrainable

ROOT = Path(__file__).resolve().parents[2]


def mlp(outputs: int = 3, width: int = 16) -> Sequential:
    return Sequential([("Linear", {"in_features": 4, "out_features": width}), ("ReLU", {}),
                       ("Linear", {"in_features": width, "out_features": outputs})])


def build_classifier() -> TorchTrainable:
    return TorchTrainable(mlp(), Optimizer("Adam", lr=1e-2), Loss("CrossEntropyLoss"),
                          TrainSpec(epochs=8, batch_size=32, seed=0))


def build_regressor() -> TorchTrainable:
    return TorchTrainable(mlp(outputs=1), Optimizer("Adam", lr=1e-2), Loss("MSELoss"),
                          TrainSpec(epochs=15, batch_size=32, seed=0), task="regressor")


class TestTorchTrainers(TrainerConformance):
    cases: ClassVar[list[TrainerCase]] = [
        TrainerCase("mlp_classifier", build_classifier, "classifier", min_score=0.95,
                    component=Selector(Optimizer, args=("Adam",), kwargs={"lr": 1e-2})),
        TrainerCase("mlp_regressor", build_regressor, "regressor", min_score=0.95,
                    component=Selector(Loss, args=("MSELoss",))),
    ]


def predictions(model: TorchTrainable, data: Any | None = None) -> np.ndarray:
    data = classification_data(seed=1) if data is None else data
    return np.asarray(model.eval(data).peek()[0])


def with_validation(epochs: int, early: EarlyStopping | None = None, seed: int = 0,
                    net: Any = None) -> TorchTrainable:
    return TorchTrainable(net or mlp(), Optimizer("Adam", lr=2e-2), Loss("CrossEntropyLoss"),
                          TrainSpec(epochs=epochs, batch_size=32, validation_split=0.25,
                                    early_stopping=early, seed=seed))


def test_predictions_are_probabilities_and_values() -> None:
    clf = with_validation(2)
    clf.train(classification_data())
    probs = predictions(clf)
    assert probs.shape == (600, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    history = clf.train_state.history
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"loss", "val_loss", "val_accuracy"} <= set(history[-1])
    reg = build_regressor()
    reg.train(regression_data())
    assert predictions(reg, regression_data(seed=1)).shape == (600,)


def test_a_network_working_in_place_on_its_input_leaves_the_callers_arrays_alone() -> None:
    # ReLU(inplace=True) first: predict wrote into the caller's array, a read-only one too
    import warnings

    from dryml.data import NumpyDataset

    net = Sequential([("ReLU", {"inplace": True}),
                      ("Linear", {"in_features": 4, "out_features": 3})])
    model = TorchTrainable(net, Optimizer("Adam", lr=1e-2), Loss("CrossEntropyLoss"),
                           TrainSpec(epochs=2, batch_size=32, seed=0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model.train(NumpyDataset((x, y), supervised=True))
    before = x.copy()
    want = model.predict(x.copy())
    assert np.array_equal(model.predict(x), want) and np.array_equal(x, before)
    frozen = x.copy()
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns of a read-only array it would write
        assert np.array_equal(model.predict(frozen), want)
    assert np.array_equal(frozen, before)
    list(model.eval(NumpyDataset((x, y), supervised=True)))
    assert np.array_equal(x, before)
    # nor the validation data from one epoch to the next (LeakyReLU scales the negatives)
    leaky = Sequential([("LeakyReLU", {"inplace": True}),
                        ("Linear", {"in_features": 4, "out_features": 3})])
    still = TorchTrainable(leaky, Optimizer("SGD", lr=0.0), Loss("CrossEntropyLoss"),
                           TrainSpec(epochs=3, batch_size=32, seed=0))
    still.train(NumpyDataset((x, y), supervised=True),
                NumpyDataset((x[:50], y[:50]), supervised=True))
    assert len({h["val_loss"] for h in still.train_state.history}) == 1


def test_early_stopping_stops_early_and_restores_the_best_weights() -> None:
    model = with_validation(100, EarlyStopping(patience=2, min_delta=1e-3))
    model.train(classification_data())
    history, progress = model.train_state.history, model.train_state.progress
    best = progress["best_epoch"]
    assert len(history) < 100, "early stopping never stopped"
    assert progress["stopped_epoch"] == len(history) == best + 2
    assert history[best - 1]["val_loss"] == min(h["val_loss"] for h in history)
    # the weights are those after the best epoch: equal to a training that ends there
    ends_at_best = with_validation(best)
    ends_at_best.train(classification_data())
    last_epoch = with_validation(len(history))
    last_epoch.train(classification_data())
    assert np.array_equal(predictions(model), predictions(ends_at_best))
    assert not np.array_equal(predictions(model), predictions(last_epoch))


def test_early_stopping_on_a_maximized_metric() -> None:
    # val_accuracy saturates: with a huge min_delta nothing after epoch 1 counts as better
    model = with_validation(50, EarlyStopping(patience=1, monitor="val_accuracy", mode="max",
                                              min_delta=2.0))
    model.train(classification_data())
    assert model.train_state.progress["stopped_epoch"] == 2
    assert model.train_state.progress["best_epoch"] == 1


def test_early_stopping_on_an_unknown_metric_says_which_exist() -> None:
    model = with_validation(3, EarlyStopping(monitor="val_f1"))
    with pytest.raises(ConfigurationError, match="val_accuracy"):
        model.train(classification_data())


def test_training_is_deterministic_with_a_seed() -> None:
    runs = []
    for seed in (3, 3, 4):
        model = with_validation(3, EarlyStopping(patience=5), seed=seed,
                                net=Sequential([*mlp().layers[:2], ("Dropout", {"p": 0.3}),
                                                mlp().layers[2]]))
        model.train(classification_data())
        runs.append((predictions(model), model.train_state.history))
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0], runs[2][0])


class Checkpointing(TorchTrainable):
    """Saves itself after every epoch and crashes after ``crash_after`` epochs."""

    def __init__(self, *args: Any, path: str, crash_after: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path, self.crash_after = path, crash_after

    def on_epoch_end(self, logs: dict[str, float]) -> None:
        save_object(self, self.path)
        if logs["epoch"] == self.crash_after:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("optimizer", [
    Optimizer("Adam", lr=2e-2),
    Optimizer("Adam", lr=np.logspace(-3, -1, 3)[1]),  # a numpy float64 in the optimizer state
    Optimizer("LBFGS", lr=0.5, max_iter=4, history_size=5),  # its step() needs a closure
    Optimizer("Adafactor", lr=2e-2),  # defined in torch.optim itself, not a submodule
], ids=["adam", "numpy-lr", "lbfgs", "adafactor"])
def test_training_resumes_from_a_mid_training_checkpoint(tmp_path: Path,
                                                         optimizer: Optimizer) -> None:
    spec = TrainSpec(epochs=5, batch_size=32, validation_split=0.25,
                     early_stopping=EarlyStopping(patience=10), seed=1)
    parts = (mlp(), optimizer, Loss("CrossEntropyLoss"), spec)
    reference = TorchTrainable(*parts)
    reference.train(classification_data())

    path = tmp_path / "checkpoint.dry"
    crashing = Checkpointing(*parts, path=str(path), crash_after=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.train(classification_data())
    resumed = load_object(path, trust=[__name__])
    assert resumed.train_state.status == "training"
    assert resumed.train_state.progress["epoch"] == 3
    resumed.train(classification_data())
    assert resumed.trained
    assert [h["epoch"] for h in resumed.train_state.history] == [1, 2, 3, 4, 5]
    assert resumed.train_state.history == reference.train_state.history
    assert np.array_equal(predictions(resumed), predictions(reference))


def test_muon_trains_a_network_of_matrices_and_says_what_it_cannot_optimize() -> None:
    layers = [("Linear", {"in_features": 4, "out_features": 16, "bias": False}), ("ReLU", {}),
              ("Linear", {"in_features": 16, "out_features": 3, "bias": False})]
    model = TorchTrainable(Sequential(layers), Optimizer("Muon", lr=2e-2),
                           spec=TrainSpec(epochs=5, seed=0))
    model.train(classification_data())
    assert model.train_state.history[-1]["loss"] < model.train_state.history[0]["loss"]
    with_biases = TorchTrainable(mlp(), Optimizer("Muon", lr=2e-2), spec=TrainSpec(epochs=1))
    with pytest.raises(ConfigurationError, match=r"Optimizer\('Muon'\).*2D parameters"):
        with_biases.train(classification_data(n=50))


class HalfPrecision(Network):
    """An MLP whose weights are of ``dtype`` (a name such as ``"bfloat16"``)."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype

    def build(self) -> Any:
        import torch

        return mlp().build().to(getattr(torch, self.dtype))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_half_precision_network_predicts_numpy_values(dtype: str) -> None:
    # numpy has no bfloat16: predictions come as float32, each value exactly
    model = TorchTrainable(HalfPrecision(dtype), Optimizer("SGD", lr=0.1),
                           spec=TrainSpec(epochs=3, seed=0))
    model.train(classification_data())
    probs = predictions(model)
    assert probs.dtype == (np.float32 if dtype == "bfloat16" else np.float16)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=2e-2)
    from dryml import metrics

    assert metrics.accuracy(model, classification_data(seed=1)) > 0.8


def test_progress_bar_shows_epochs_loss_and_validation_metric(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        from dryml.models import TrainSpec
        from dryml.testing.trainers import classification_data
        from dryml_torch.models import Sequential, TorchTrainable
        net = Sequential([("Linear", {"in_features": 4, "out_features": 3})])
        model = TorchTrainable(net, spec=TrainSpec(epochs=4, validation_split=0.2))
        model.train(classification_data(n=200))
        print("trained", model.trained)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"})
    assert done.returncode == 0, done.stderr
    assert "trained True" in done.stdout
    last = done.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert "4/4" in last and "epoch" in last, done.stderr
    assert "loss=" in last and "val_loss=" in last and "val_accuracy=" in last, last


def test_definitions_are_plain_values_and_import_no_torch() -> None:
    script = textwrap.dedent("""
        import json, sys
        from dryml import ObjectDef
        from dryml.models import TrainSpec
        from dryml_torch.models import Loss, Optimizer, Sequential, TorchTrainable
        net = Sequential([("Linear", {"in_features": 4, "out_features": 3})])
        model = TorchTrainable(net, Optimizer("SGD", lr=0.1, momentum=0.9), Loss("CrossEntropyLoss"),
                               TrainSpec(epochs=2))
        d = ObjectDef.from_dict(json.loads(json.dumps(model.definition().to_dict())))
        assert d.build().optimizer.kwargs == {"lr": 0.1, "momentum": 0.9}
        assert "torch" not in sys.modules, "building a definition imported torch"
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_bad_components_are_refused_with_a_fix() -> None:
    with pytest.raises(ConfigurationError, match="pair such as"):
        Sequential(["Linear"])
    with pytest.raises(ConfigurationError, match="task"):
        TorchTrainable(mlp(), task="ranker")
    with pytest.raises(ConfigurationError, match="torch.nn.modules"):
        Sequential([("DataParallel", {"module": None})]).build()
    with pytest.raises(ConfigurationError, match="torch.optim"):
        Optimizer("Nope").build([])
    model = TorchTrainable(Sequential([("NoSuchLayer", {})]))
    with pytest.raises(ConfigurationError, match="NoSuchLayer"):
        model.train(classification_data(n=50))
    # found by the metrics audit: with reduction="sum" the logged loss (a mean of batch sums)
    # and val_loss (a sum over the validation rows) differed by the batch size
    model = TorchTrainable(mlp(), Optimizer("Adam"), Loss("CrossEntropyLoss", reduction="sum"))
    with pytest.raises(ConfigurationError, match=r"takes the default reduction='mean'"):
        model.train(classification_data(n=50))
    # KLDivLoss' batchmean is a mean over each batch's examples: trained (found by review)
    from dryml.data import NumpyDataset

    x, labels = classification_data(n=60).numpy().peek()
    target = np.eye(3, dtype=np.float32)[labels] * 0.9 + 0.1 / 3
    kl = TorchTrainable(Sequential([("Linear", {"in_features": x.shape[1], "out_features": 3}),
                                    ("LogSoftmax", {"dim": 1})]),
                        Optimizer("Adam"), Loss("KLDivLoss", reduction="batchmean"),
                        TrainSpec(epochs=1, seed=0), task="regressor")
    kl.train(NumpyDataset((x, target), supervised=True))
    assert kl.train_state.history[-1]["loss"] > 0


class Custom(Network):
    """A hand-written module (not a Sequential)."""

    def __init__(self, width: int) -> None:
        self.width = width

    def build(self) -> Any:
        import torch

        class Residual(torch.nn.Module):
            def __init__(self, width: int) -> None:
                super().__init__()
                self.inp = torch.nn.Linear(4, width)
                self.hidden = torch.nn.Linear(width, width)
                self.out = torch.nn.Linear(width, 3)

            def forward(self, x: Any) -> Any:
                h = torch.relu(self.inp(x))
                return self.out(h + torch.relu(self.hidden(h)))

        return Residual(self.width)


def test_custom_network_subclass(tmp_path: Path) -> None:
    model = TorchTrainable(Custom(8), Optimizer("Adam", lr=2e-2),
                           spec=TrainSpec(epochs=5, seed=2))
    model.train(classification_data())
    from dryml import metrics

    assert metrics.accuracy(model, classification_data(seed=1)) > 0.95
    path = tmp_path / "custom.dry"
    save_object(model, path)
    import torch

    rng_state = torch.random.get_rng_state()
    loaded = load_object(path, trust=[__name__])
    assert torch.equal(torch.random.get_rng_state(), rng_state), "loading reseeded torch"
    assert np.array_equal(predictions(loaded), predictions(model))


class Holder(Object):
    """An Object that builds and holds its module (torch imported when it is built)."""

    def __init__(self, width: int) -> None:
        import torch

        self.module = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Tanh(),
                                          torch.nn.Linear(width, 1))


@compute_context({"torch": {}})
def r2_of_trained(model: TorchTrainable) -> float:
    """Train and score in a torch worker (which imports this module to run this function:
    sent from here, the ObjectDef's class would be refused as untrusted there)."""
    from dryml import metrics

    model.train(regression_data())
    return metrics.r2(model, regression_data(seed=1))


def test_network_from_the_definition_of_an_object_holding_a_module() -> None:
    # the Object (which imports torch when built) is only built in the worker
    model = TorchTrainable(ObjectDef(Holder, 8), Optimizer("Adam", lr=2e-2),
                           spec=TrainSpec(epochs=10, seed=0), task="regressor")
    assert r2_of_trained(model) > 0.95


def test_device_comes_from_the_context() -> None:
    import torch

    @compute_context({"torch": {}})
    def device_of_trained() -> str:
        model = build_classifier()
        model.train(classification_data(n=60))
        return str(next(model._net.parameters()).device)

    assert device_of_trained() == "cpu"  # no GPU requested: none granted
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")

    @compute_context({"torch": {"num_gpus": 1}})
    def device_on_gpu() -> tuple[str, Any]:
        model = build_classifier()
        model.train(classification_data())
        return str(next(model._net.parameters()).device), predictions(model)

    device, probs = device_on_gpu()
    assert device.startswith("cuda:")
    assert probs.shape == (600, 3)


def test_a_checkpoint_from_the_stopping_epoch_runs_no_more_epochs(tmp_path: Path) -> None:
    # nothing after epoch 1 improves by 10: early stopping ends the run after epoch 2
    spec = TrainSpec(epochs=6, validation_split=0.25, seed=2,
                     early_stopping=EarlyStopping(patience=1, min_delta=10.0))
    parts = (mlp(), Optimizer("Adam", lr=2e-2), Loss("CrossEntropyLoss"), spec)
    reference = TorchTrainable(*parts)
    reference.train(classification_data())
    assert reference.train_state.progress["stopped_epoch"] == 2
    path = tmp_path / "checkpoint.dry"
    with pytest.raises(RuntimeError, match="simulated crash"):
        Checkpointing(*parts, path=str(path), crash_after=2).train(classification_data())
    resumed = load_object(path, trust=[__name__])
    resumed.train(classification_data())
    assert resumed.train_state.history == reference.train_state.history
    assert np.array_equal(predictions(resumed), predictions(reference))


def test_trainers_are_registered_through_the_plugin() -> None:
    from dryml.plugins import get_plugin_manager
    from dryml.records import load_ref

    records = {r.name: r for _, r in get_plugin_manager().records("dryml_trainers")
               if r.package == "dryml-torch"}
    assert set(records) == {"torch.trainable", "torch.sequential", "torch.network",
                            "torch.optimizer", "torch.loss", "torch.procedure", "torch.mixup",
                            "torch.gradient_accumulation"}
    assert load_ref(records["torch.trainable"].impl) is TorchTrainable
    assert all(r.framework == "torch" for r in records.values())


PREDICT_FILE = """
import json, resource, sys
import numpy as np
from dryml import load_object
from dryml.errors import DrymlError
model, outcomes = load_object(sys.argv[1]), []
for _ in range(2):  # a refused model stays refused (never predicts with fresh weights)
    try:
        model.predict(np.ones((5, 4), "float32"))
        outcomes.append("predicted")
    except DrymlError as exc:
        outcomes.append(type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - not a crash, but not dryml's error either
        outcomes.append("raw " + type(exc).__name__)
print(json.dumps({"outcome": "/".join(outcomes),
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@pytest.mark.parametrize("width", [25_000_000, 10**12])
def test_layer_sizes_that_do_not_fit_the_stored_weights_are_refused_before_allocating(
        width: int, tmp_path: Path) -> None:
    # a 16-wide hidden layer made 25_000_000 wide in the file's arguments: predict allocated
    # ~760 MB, then load_state_dict raised torch's RuntimeError (10**12: asked for 16 TB)
    import json

    from dryml.testing.serializers import rewrite_manifest

    model = build_classifier()
    model.train(classification_data(seed=1))
    save_object(model, tmp_path / "good.dry")

    def widen(manifest: dict[str, Any]) -> None:
        node = next(o for o in manifest["objects"] if o["cls"].endswith(":Sequential"))
        text = json.dumps(node["args"]).replace('"out_features": 16', f'"out_features": {width}',
                                                1)
        node["args"] = json.loads(text.replace('"in_features": 16', f'"in_features": {width}',
                                               1))

    (tmp_path / "bad.dry").write_bytes(rewrite_manifest((tmp_path / "good.dry").read_bytes(),
                                                        widen))
    runs = {}
    for name in ("good", "bad"):
        done = subprocess.run([sys.executable, "-c", PREDICT_FILE, str(tmp_path / f"{name}.dry")],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, (name, done.returncode, done.stderr[-2000:])
        runs[name] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs["good"]["outcome"] == "predicted/predicted"
    assert runs["bad"]["outcome"] == "FormatError/FormatError", runs
    assert runs["bad"]["peak_mib"] < runs["good"]["peak_mib"] + 200, runs


def test_patience_zero_stops_at_the_first_epoch_without_improvement() -> None:
    """Found by review: with patience=0 the resume check took a fresh training for one that
    had already stopped: no epoch ran, and the untrained model was marked trained."""
    for patience in (0, 1):
        model = with_validation(30, EarlyStopping(patience=patience))
        model.train(classification_data())
        history, progress = model.train_state.history, model.train_state.progress
        assert model.trained and len(history) >= 2
        assert progress["stopped_epoch"] == len(history) == progress["best_epoch"] + 1
        if patience == 0:
            zero = predictions(model)
        else:
            np.testing.assert_array_equal(predictions(model), zero)  # 0 acts as 1


def _separable(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.float32)


def test_a_one_dimensional_logit_output_is_one_sigmoid_per_row() -> None:
    """Found by review: a network ending in .squeeze(-1) (here Flatten(start_dim=0)) got a
    softmax over the whole batch in predict (the test set summed to 1.0), and validation
    accuracy took the argmax over the batch (0.0 next to a loss of 0.12)."""
    from dryml import metrics
    from dryml.context import shutdown_workers
    from dryml.data import NumpyDataset

    x, y = _separable(800)
    net = Sequential([("Linear", {"in_features": 2, "out_features": 1}),
                      ("Flatten", {"start_dim": 0})])
    model = TorchTrainable(net, Optimizer("Adam", lr=5e-2), Loss("BCEWithLogitsLoss"),
                           TrainSpec(epochs=20, batch_size=32, seed=0, validation_split=0.25))
    try:
        model.train(NumpyDataset((x[:400], y[:400]), supervised=True))
        out = model.eval(NumpyDataset((x[400:], y[400:]), supervised=True))
        probabilities = out.peek()[0]
        accuracy = metrics.accuracy(out)
    finally:
        shutdown_workers()
    assert probabilities.shape == (400, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert accuracy > 0.95
    assert model.train_state.history[-1]["val_accuracy"] > 0.9


def test_a_one_column_target_meets_a_one_dimensional_regression_output() -> None:
    """Found by review: (n,) outputs against (n, 1) targets broadcast to n x n in MSELoss
    (torch warned), and the model learned the mean: r2 0.004."""
    from dryml import metrics
    from dryml.context import shutdown_workers
    from dryml.data import NumpyDataset

    x, _ = _separable(600)
    target = (3 * x[:, :1] - 2 * x[:, 1:]).astype(np.float32)  # (n, 1)
    net = Sequential([("Linear", {"in_features": 2, "out_features": 1}),
                      ("Flatten", {"start_dim": 0})])
    model = TorchTrainable(net, Optimizer("Adam", lr=5e-2), spec=TrainSpec(
        epochs=40, batch_size=32, seed=0), task="regressor")
    try:
        model.train(NumpyDataset((x[:400], target[:400]), supervised=True))
        r2 = metrics.r2(model, NumpyDataset((x[400:], target[400:]), supervised=True))
    finally:
        shutdown_workers()
    assert r2 > 0.99


def test_a_classifier_with_a_loss_that_takes_probabilities_is_refused() -> None:
    """Found by review: Sigmoid + BCELoss trained, and predict applied the sigmoid again
    (every probability in [0.5, 0.73], accuracy 0.48)."""
    net = Sequential([("Linear", {"in_features": 2, "out_features": 1}), ("Sigmoid", {})])
    with pytest.raises(ConfigurationError, match="use Loss\\('BCEWithLogitsLoss'\\)"):
        TorchTrainable(net, loss=Loss("BCELoss"))
    TorchTrainable(net, loss=Loss("BCELoss"), task="regressor")  # probabilities as values


def test_a_multilabel_network_gives_each_output_its_sigmoid() -> None:
    """With BCEWithLogitsLoss and several outputs (multi-hot targets), predict took a softmax
    over the outputs, as for one class per example (found by the metrics audit): two labels
    both present came out near 0.5 each. Each output gets its own sigmoid now."""
    import torch

    from dryml.context import shutdown_workers
    from dryml.data import NumpyDataset

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0], axis=1).astype(np.float32)  # often both
    net = Sequential([("Linear", {"in_features": 2, "out_features": 2})])
    model = TorchTrainable(net, Optimizer("Adam", lr=5e-2), Loss("BCEWithLogitsLoss"),
                           TrainSpec(epochs=15, batch_size=32, seed=0))
    try:
        model.train(NumpyDataset((x, y), supervised=True))
        prob = model.eval(NumpyDataset((x, y), supervised=True)).peek()[0]
    finally:
        shutdown_workers()
    with torch.no_grad():
        logits = model._ensure_net()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-logits)), rtol=1e-5)
    both = y.all(axis=1)
    assert ((prob[both] > 0.5).all(axis=1)).mean() > 0.9  # a softmax cannot give two > 0.5


def test_a_multilabel_networks_val_accuracy_counts_each_label() -> None:
    """Found by the metrics audit: with several independent labels a row (BCEWithLogitsLoss),
    val_accuracy asked whether the row's top output was its first label set (0.62 where 0.99
    of the labels were right; Keras logs 0.99), and early stopping on it followed that."""
    from dryml.data import NumpyDataset
    from dryml.models import split_validation

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, :3] > 0).astype(np.float32)  # three labels, often several at once
    spec = TrainSpec(epochs=20, validation_split=0.3, seed=0)
    model = TorchTrainable(Sequential([("Linear", {"in_features": 4, "out_features": 3})]),
                           Optimizer("Adam", lr=5e-2), Loss("BCEWithLogitsLoss"), spec)
    model.train(NumpyDataset((x, y), supervised=True))
    (_, _), (x_valid, y_valid) = split_validation(x, y, 0.3, spec.split_seed)
    prob = predictions(model, NumpyDataset((x_valid, y_valid), supervised=True))
    per_label = ((prob > 0.5) == (y_valid > 0.5)).mean()
    assert per_label > 0.95
    assert model.train_state.history[-1]["val_accuracy"] == pytest.approx(per_label)


def test_early_stopping_on_a_monitor_nan_in_every_epoch_says_so(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by the metrics audit: a validation row with a missing value made val_loss NaN in
    every epoch; no epoch improved, and training ended in a bare KeyError 'best' (the model
    trained in the worker lost)."""
    from dryml.data import NumpyDataset

    x, y = classification_data(n=200).numpy().peek()
    x_valid = x[150:].copy()
    x_valid[0, 0] = np.nan
    model = TorchTrainable(mlp(), Optimizer("Adam", lr=1e-2), Loss("CrossEntropyLoss"),
                           TrainSpec(epochs=10, seed=0, early_stopping=EarlyStopping(patience=3)))
    model.train(NumpyDataset((x[:150], y[:150]), supervised=True),
                NumpyDataset((x_valid, y[150:]), supervised=True))
    assert model.train_state.progress["stopped_epoch"] == 3
    assert "best" not in model.train_state.progress
    assert "early stopping after epoch 3: val_loss was NaN in every epoch" in (
        capsys.readouterr().err)
    assert predictions(model).shape[0] > 0


def _labelled(y: np.ndarray, n: int = 321) -> Any:
    from dryml.data import NumpyDataset

    x, labels = classification_data(n=n).numpy().peek()
    return NumpyDataset((x, y(labels)), supervised=True)


def test_a_one_output_network_with_a_per_class_loss_is_refused() -> None:
    """CrossEntropyLoss over one output per row took the whole batch as one example over as
    many classes as rows: it trained, and scored plausibly, without an error."""
    model = TorchTrainable(mlp(outputs=1), spec=TrainSpec(epochs=1, seed=0))
    with pytest.raises(ConfigurationError, match=r"CrossEntropyLoss needs one output per class"
                       r".*Loss\('BCEWithLogitsLoss'\)"):
        model.train(classification_data())


def test_a_classifier_network_ending_in_softmax_is_refused() -> None:
    """predict applies the softmax: a network ending in one gave probabilities squashed a
    second time, towards uniform (log_loss 0.61 where Keras' same network gave 0.14)."""
    net = Sequential([*mlp().layers, ("Softmax", {"dim": -1})])
    with pytest.raises(ConfigurationError, match="ends in Softmax.*drop the last layer"):
        TorchTrainable(net, spec=TrainSpec(epochs=1, seed=0)).train(classification_data())


@pytest.mark.parametrize("form", ["float", "column"])
def test_labels_as_whole_floats_or_one_column_train_as_class_indices(form: str) -> None:
    """The other backends take these; torch raised its own dtype or shape error."""
    reshape = {"float": lambda y: y.astype(np.float32), "column": lambda y: y[:, None]}[form]
    base = build_classifier()
    base.train(_labelled(lambda y: y))
    other = build_classifier()
    other.train(_labelled(reshape))
    test = classification_data(seed=1)
    np.testing.assert_array_equal(predictions(other, test), predictions(base, test))
    assert other.train_state.history == base.train_state.history  # val accuracy too


def test_a_last_training_batch_of_one_row_joins_the_one_before_when_batch_norm_trains() -> None:
    """321 rows in batches of 32 left one row for the last batch, and BatchNorm1d raises on a
    training batch of one row."""
    import torch

    from dryml_torch._procedure import EpochContext

    bn = Sequential([("Linear", {"in_features": 4, "out_features": 8}),
                     ("BatchNorm1d", {"num_features": 8}), ("ReLU", {}),
                     ("Linear", {"in_features": 8, "out_features": 3})])
    model = TorchTrainable(bn, spec=TrainSpec(epochs=2, batch_size=32, seed=0))
    model.train(_labelled(lambda y: y))
    assert [h["epoch"] for h in model.train_state.history] == [1, 2]

    def sizes(net: Any) -> list[int]:
        ctx = EpochContext(None, net, None, None, torch.device("cpu"), torch.zeros(321, 4),
                           torch.zeros(321), torch.arange(321), 32, 0, 0)  # type: ignore[arg-type]
        return [len(x) for x, _ in ctx.batches()]

    assert sizes(bn.build()) == [32] * 9 + [33]
    assert sizes(mlp().build()) == [32] * 10 + [1]  # without batch norm: as before


def test_a_network_trained_with_a_final_softmax_before_it_was_refused_predicts_its_own_outputs(
) -> None:
    """Models trained so before the refusal still predict: their outputs are probabilities
    already, and are no longer squashed a second time."""
    import torch

    logits_model = build_classifier()
    logits_model.train(classification_data())
    with_softmax = TorchTrainable(Sequential([*mlp().layers, ("Softmax", {"dim": -1})]),
                                  Optimizer("Adam", lr=1e-2), Loss("CrossEntropyLoss"),
                                  TrainSpec(epochs=8, batch_size=32, seed=0))
    net = with_softmax.network.build()
    logits_model._place(torch.device("cpu"), optimizer=False)
    net.load_state_dict(logits_model._net.state_dict())  # the weights such a training left
    with_softmax._net = net
    with_softmax.train_state.status = "trained"
    test = classification_data(seed=1)
    np.testing.assert_allclose(predictions(with_softmax, test), predictions(logits_model, test),
                               rtol=1e-5, atol=1e-6)


def test_gradient_accumulation_weighs_a_merged_last_batch_by_its_rows() -> None:
    """With batch norm, 9 rows in batches of 4 are batches of 4 and 5; the group's loss was
    divided by 8 rows, not 9 (1.125 for a loss of 1.0 on every row)."""
    import torch

    from dryml_torch._procedure import EpochContext
    from dryml_torch.models import GradientAccumulation

    net = Sequential([("Linear", {"in_features": 2, "out_features": 2}),
                      ("BatchNorm1d", {"num_features": 2})]).build()
    ctx = EpochContext(None, net, torch.optim.SGD(net.parameters(), lr=0.0),  # type: ignore[arg-type]
                       lambda out, y: out.sum() * 0 + 1.0, torch.device("cpu"),
                       torch.zeros(9, 2), torch.zeros(9), torch.arange(9), 4, 0, 0)
    assert [ctx.batch_rows(i) for i in range(ctx.num_batches)] == [4, 5]
    closure = GradientAccumulation._group_closure(ctx, range(2), [])
    assert float(ctx.step(closure)) == pytest.approx(1.0)


def test_val_accuracy_of_one_logit_per_row_against_a_column_of_labels() -> None:
    """(n, 1) outputs against (n, 1) targets were read as one-hot rows: every row correct."""
    import torch

    from dryml_torch._models_loop import _correct

    out = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])
    y = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    assert int(_correct(out, y, None)) == int(_correct(out[:, 0], y[:, 0], None)) == 2


class Widening(Network):
    """A network whose code decides its width (WIDTH), as code edited between runs does."""

    WIDTH = 8

    def build(self) -> Any:
        import torch

        return torch.nn.Sequential(torch.nn.Linear(4, Widening.WIDTH),
                                   torch.nn.Linear(Widening.WIDTH, 3))


def test_weights_that_do_not_fit_edited_network_code_say_the_code_may_have_changed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights saved with one width and checked against the network after its code changed
    were said to be a damaged or crafted file, nothing more (found by the resume and Pipe
    audit)."""
    from dryml.errors import FormatError
    from dryml_torch.models import _check_stored_shapes

    saved = Widening().build().state_dict()
    monkeypatch.setattr(Widening, "WIDTH", 16)
    with pytest.raises(FormatError, match=r"has shape \(8, 4\) where the network its arguments "
                                          r"build has \(16, 4\); the file is damaged or was "
                                          r"crafted, or the network's code"):
        _check_stored_shapes(Widening(), saved)
