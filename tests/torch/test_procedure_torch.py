"""Training procedures as components of TorchTrainable: a user's own procedure trains with
dryml's validation, early stopping, history and resume; the shipped MixupProcedure and
GradientAccumulation; saved, selected, searched over and deterministic like any component."""

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

from dryml import ObjectDef, load_object, save_object
from dryml.context import compute_context
from dryml.errors import ConfigurationError
from dryml.models import EarlyStopping, TrainingProcedure, TrainSpec
from dryml.repo import Repo, Selector
from dryml.search import Choice, Search
from dryml.testing.trainers import TrainerCase, TrainerConformance, classification_data
from dryml_torch.models import (
    EpochContext,
    GradientAccumulation,
    MixupProcedure,
    Optimizer,
    Sequential,
    TorchProcedure,
    TorchTrainable,
)


def mlp(width: int = 16) -> Sequential:
    return Sequential([("Linear", {"in_features": 4, "out_features": width}), ("ReLU", {}),
                       ("Linear", {"in_features": width, "out_features": 3})])


def model(procedure: Any = None, epochs: int = 4, early: EarlyStopping | None = None,
          seed: Any = 0, batch_size: int = 32, split: float = 0.25,
          optimizer: Any = None) -> TorchTrainable:
    return TorchTrainable(mlp(), optimizer or Optimizer("Adam", lr=2e-2),
                          spec=TrainSpec(epochs=epochs, batch_size=batch_size,
                                         validation_split=split, early_stopping=early,
                                         seed=seed),
                          procedure=procedure)


def predictions(trained: TorchTrainable) -> np.ndarray:
    return np.asarray(trained.eval(classification_data(n=200, seed=1)).peek()[0])


def build_mixup() -> TorchTrainable:
    return TorchTrainable(mlp(), Optimizer("Adam", lr=1e-2),
                          spec=TrainSpec(epochs=8, batch_size=32, seed=0),
                          procedure=MixupProcedure(alpha=0.2))


class TestProcedureTrainers(TrainerConformance):
    """The whole trainer conformance suite (save/load in a fresh process included) with a
    procedure, found in a Repo through it."""

    cases: ClassVar[list[TrainerCase]] = [
        TrainerCase("mlp_mixup", build_mixup, "classifier", min_score=0.95,
                    component=Selector(MixupProcedure, kwargs={"alpha": 0.2})),
    ]


class ClippedSteps(TorchProcedure):
    """A user's procedure: clips the gradient norm of every step and reports the largest
    norm it saw as an extra epoch metric."""

    def __init__(self, max_norm: float = 1.0) -> None:
        self.max_norm = max_norm

    def train_epoch(self, ctx: EpochContext) -> dict[str, float]:
        self._largest = 0.0
        logs = super().train_epoch(ctx)
        return {**logs, "grad_norm": self._largest}

    def train_step(self, ctx: EpochContext, x: Any, y: Any) -> Any:
        import torch

        ctx.optimizer.zero_grad(set_to_none=True)
        loss = ctx.loss(ctx.net(x), y)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(ctx.net.parameters(), self.max_norm)
        self._largest = max(self._largest, float(norm))
        ctx.optimizer.step()
        return loss


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


def test_a_users_procedure_gets_validation_early_stopping_and_history() -> None:
    # nothing after epoch 1 improves val_loss by 10: early stopping ends the run after epoch 2
    trained = model(ClippedSteps(max_norm=0.5), epochs=20,
                    early=EarlyStopping(patience=1, min_delta=10.0))
    trained.train(classification_data(n=300))
    history, progress = trained.train_state.history, trained.train_state.progress
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"loss", "grad_norm", "val_loss", "val_accuracy"} <= set(history[-1])
    assert all(h["grad_norm"] > 0 for h in history)
    assert progress["stopped_epoch"] == 2 and progress["best_epoch"] == 1
    assert isinstance(trained.procedure, ClippedSteps) and trained.procedure.max_norm == 0.5


def test_shipped_procedures_learn_and_differ_from_the_default() -> None:
    histories = {}
    for procedure in (None, MixupProcedure(alpha=0.4), GradientAccumulation(steps=3)):
        trained = model(procedure, epochs=6)
        trained.train(classification_data(n=400))
        histories[type(trained.procedure).__name__] = trained.train_state.history
        assert trained.train_state.history[-1]["val_accuracy"] > 0.9, procedure
    assert set(histories) == {"TorchProcedure", "MixupProcedure", "GradientAccumulation"}
    losses = {name: h[-1]["loss"] for name, h in histories.items()}
    assert len(set(losses.values())) == 3, losses
    # mixup trains on mixed examples: its training loss stays well above the default's
    assert losses["MixupProcedure"] > losses["TorchProcedure"]


@pytest.mark.parametrize("rows", [480, 460], ids=["whole-groups", "short-last-batch"])
@pytest.mark.parametrize("optimizer", [Optimizer("SGD", lr=0.1),
                                       Optimizer("LBFGS", lr=0.5, max_iter=3)],
                         ids=["sgd", "lbfgs"])
def test_gradient_accumulation_is_a_larger_batch(rows: int, optimizer: Optimizer) -> None:
    # 4 accumulated batches of 30 rows (same order) step the optimizer as one batch of 120
    # rows would, also when the epoch's last batch is short (460 rows: the last group is
    # 30+30+30+10, the last large batch 100; found by review: each batch of a group weighed a
    # quarter of it whatever its rows, and predictions differed by 0.02); LBFGS evaluates
    # the loss several times a step, each time over the whole group
    accumulated = model(GradientAccumulation(steps=4), epochs=3, batch_size=30, split=0.0,
                        optimizer=optimizer)
    large = model(None, epochs=3, batch_size=120, split=0.0, optimizer=optimizer)
    small = model(None, epochs=3, batch_size=30, split=0.0, optimizer=optimizer)
    for trained in (accumulated, large, small):
        trained.train(classification_data(n=rows))
    # float32 sums of 4x30 rows and of 120 differ in their last bits; LBFGS's curvature
    # estimates grow that, by CPU (AVX-512 kernels: 7e-5 after 3 epochs): within 1e-3, still a
    # fiftieth of what weighing each batch a quarter did
    tight = optimizer.dry_args[0] == "SGD"
    np.testing.assert_allclose(predictions(accumulated), predictions(large),
                               rtol=1e-4 if tight else 1e-3, atol=1e-6 if tight else 1e-3)
    assert not np.allclose(predictions(accumulated), predictions(small), atol=1e-3)


@pytest.mark.parametrize("procedure", [None, MixupProcedure(alpha=0.2),
                                       GradientAccumulation(steps=2)],
                         ids=["default", "mixup", "accumulation"])
def test_an_optimizer_that_evaluates_the_loss_again_trains_with_every_procedure(
        procedure: Any) -> None:
    # LBFGS.step(closure) calls the closure several times; step() without one is a TypeError
    trained = model(procedure, epochs=3,
                    optimizer=Optimizer("LBFGS", max_iter=4, line_search_fn="strong_wolfe"))
    trained.train(classification_data())
    assert [h["epoch"] for h in trained.train_state.history] == [1, 2, 3]
    assert trained.train_state.history[-1]["val_accuracy"] > 0.9


def test_save_load_keeps_the_procedure_and_resumes_identically(tmp_path: Path) -> None:
    parts = (mlp(), Optimizer("Adam", lr=2e-2))
    spec = TrainSpec(epochs=5, validation_split=0.25, early_stopping=EarlyStopping(patience=10),
                     seed=3)
    reference = TorchTrainable(*parts, spec=spec, procedure=MixupProcedure(alpha=0.3))
    reference.train(classification_data(n=300))
    path = tmp_path / "checkpoint.dry"
    crashing = Checkpointing(*parts, spec=spec, procedure=MixupProcedure(alpha=0.3), path=str(path),
                             crash_after=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.train(classification_data(n=300))
    resumed = load_object(path, trust=[__name__])
    assert isinstance(resumed.procedure, MixupProcedure) and resumed.procedure.alpha == 0.3
    assert resumed.train_state.progress["epoch"] == 2
    resumed.crash_after = None
    resumed.train(classification_data(n=300))
    assert resumed.train_state.history == reference.train_state.history
    assert np.array_equal(predictions(resumed), predictions(reference))
    # the procedure is part of the definition, as saved
    procedure = load_object(path, trust=[__name__]).definition().kwargs["procedure"]
    assert procedure.cls is MixupProcedure and procedure.kwargs["alpha"] == 0.3
    assert "MixupProcedure" in repr(procedure)


def test_selector_finds_models_by_procedure(tmp_path: Path) -> None:
    repo = Repo(str(tmp_path / "repo"), create=True)
    built = {"default": model(), "mixup": model(MixupProcedure(alpha=0.4)),
             "mixup2": model(MixupProcedure(alpha=0.2)), "accumulate": model(GradientAccumulation(steps=2)),
             "clipped": model(ClippedSteps(1.0))}
    for m in built.values():
        repo.add_object(m)

    def ids(selector: Any) -> set[str]:
        return {m.dry_id for m in repo.get(selector)}

    def by(procedure: Selector) -> Selector:
        return Selector(TorchTrainable, kwargs={"procedure": procedure})

    names = {m.dry_id: name for name, m in built.items()}
    assert {names[i] for i in ids(by(Selector(MixupProcedure)))} == {"mixup", "mixup2"}
    assert {names[i] for i in ids(by(Selector(MixupProcedure, kwargs={"alpha": 0.4})))} == {
        "mixup"}
    assert {names[i] for i in ids(by(Selector(GradientAccumulation)))} == {"accumulate"}
    # every procedure is a TrainingProcedure; a user's subclass of TorchProcedure is found too
    assert {names[i] for i in ids(by(Selector(TrainingProcedure)))} == set(built) - {"default"}
    assert {names[i] for i in ids(by(Selector(ClippedSteps)))} == {"clipped"}


def test_search_over_a_choice_of_procedures(tmp_path: Path) -> None:
    space = ObjectDef(TorchTrainable, ObjectDef(Sequential, mlp(8).layers),
                      optimizer=ObjectDef(Optimizer, "Adam", lr=2e-2),
                      spec=ObjectDef(TrainSpec, epochs=2, seed=0),
                      procedure=Choice(ObjectDef(MixupProcedure, alpha=0.3),
                                       ObjectDef(GradientAccumulation, steps=2),
                                       labels=["mixup", "accumulate"]))
    result = Search(space, metric="accuracy", repo=str(tmp_path / "repo"), name="procedures",
                    sampler="grid", n_trials=2).run(classification_data(n=300),
                                                    classification_data(n=100, seed=1))
    assert [t["status"] for t in result.trials] == ["complete", "complete"]
    assert {t["params"]["procedure"] for t in result.trials} == {"mixup", "accumulate"}
    repo = Repo(str(tmp_path / "repo"))
    found = repo.get(Selector(TorchTrainable, kwargs={"procedure": Selector(MixupProcedure)}))
    # (an attribute loads the lazy entry: Trainable.train_state, a property, does not yet)
    assert len(found) == 1 and isinstance(found[0].procedure, MixupProcedure) and found[0].trained


def test_same_dry_id_trains_the_same_and_copies_differ() -> None:
    definition = ObjectDef(TorchTrainable, mlp(), spec=TrainSpec(epochs=2, validation_split=0.2),
                           procedure=ObjectDef(MixupProcedure, alpha=0.5))
    first, copy = definition.build(), definition.build()
    again = first.definition().build()  # the same dry_id: the same seed
    for trained in (first, again, copy):
        trained.train(classification_data(n=300))
    assert first.train_state.history == again.train_state.history
    assert np.array_equal(predictions(first), predictions(again))
    assert first.train_state.history != copy.train_state.history


class BadEpoch(TorchProcedure):
    """Returns the loss alone instead of a dict of metrics."""

    def train_epoch(self, ctx: EpochContext) -> Any:
        return super().train_epoch(ctx)["loss"]


def test_bad_procedures_are_refused_with_a_fix() -> None:
    with pytest.raises(ConfigurationError, match="TorchProcedure"):
        TorchTrainable(mlp(), procedure=Optimizer("Adam"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="alpha"):
        MixupProcedure(alpha=0.0)
    with pytest.raises(ConfigurationError, match="steps"):
        GradientAccumulation(steps=0)
    with pytest.raises(ConfigurationError, match="dict of metric names"):
        model(BadEpoch(), epochs=1).train(classification_data(n=60))


def test_a_definition_with_a_procedure_is_json_and_imports_no_torch() -> None:
    script = textwrap.dedent("""
        import json, sys
        from dryml import ObjectDef
        from dryml_torch.models import MixupProcedure, Sequential, TorchTrainable
        net = Sequential([("Linear", {"in_features": 4, "out_features": 3})])
        model = TorchTrainable(net, procedure=MixupProcedure(alpha=0.3))
        d = ObjectDef.from_dict(json.loads(json.dumps(model.definition().to_dict())))
        assert d.build().procedure.alpha == 0.3
        assert d.to_dict()["dry_kwargs"]["procedure"]["cls"].endswith("models:MixupProcedure")
        assert "torch" not in sys.modules, "building a definition imported torch"
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


STOP_AT: dict[str, int | None] = {"step": None, "seen": 0}


class FailsAtStep(TorchProcedure):
    """torch's own steps, but raises when the step count reaches ``STOP_AT["step"]`` (as a
    KeyboardInterrupt, an out-of-memory error or a NaN check would, part-way through an
    epoch)."""

    def train_step(self, ctx: EpochContext, x: Any, y: Any) -> Any:
        STOP_AT["seen"] = int(STOP_AT["seen"] or 0) + 1
        if STOP_AT["step"] is not None and STOP_AT["seen"] >= STOP_AT["step"]:
            raise RuntimeError("simulated interruption")
        return super().train_step(ctx, x, y)


@compute_context({"torch": {}})
def interrupted_mid_epoch_then_trained_again() -> dict[str, Any]:
    """In place (in this torch worker): 8 steps per epoch, stopped at the 21st step (in epoch
    3), saved, trained again in place and from the file; and the uninterrupted training."""
    import io
    import warnings

    data = classification_data(n=320)
    reference = model(FailsAtStep(), epochs=5)
    reference.train(data)
    interrupted = model(FailsAtStep(), epochs=5)
    STOP_AT.update(step=21, seen=0)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        interrupted.train(data)
    STOP_AT["step"] = None
    progress = dict(interrupted.train_state.progress)
    buffer = io.BytesIO()
    save_object(interrupted, buffer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        interrupted.train(data)
    from_file = load_object(io.BytesIO(buffer.getvalue()), trust=[__name__])
    from_file.train(data)
    return {"progress": progress, "warnings": [str(w.message) for w in caught],
            "reference": (predictions(reference), reference.train_state.history),
            "in_place": (predictions(interrupted), interrupted.train_state.history),
            "from_file": (predictions(from_file), from_file.train_state.history)}


def test_a_training_that_raised_mid_epoch_starts_over_instead_of_resuming_wrong() -> None:
    """Its weights and optimizer state were from the middle of epoch 3 while its progress said
    epoch 2: trained again (in place or from a file saved after the error) it ran part of
    epoch 3 twice and reported success with other numbers (found by review, in Keras; torch
    did the same). It now starts over, says so, and ends as the uninterrupted training."""
    out = interrupted_mid_epoch_then_trained_again()
    assert out["progress"] == {"epoch": 2, "interrupted": True}
    assert any("starts over from epoch 0" in w for w in out["warnings"])
    expected, history = out["reference"]
    for name in ("in_place", "from_file"):
        got, got_history = out[name]
        assert np.array_equal(got, expected), name
        assert got_history == history, name


class ModeSeen(TorchProcedure):
    """Records whether the network was in training mode when its epoch began."""

    def train_epoch(self, ctx: EpochContext) -> dict[str, float]:
        training = float(ctx.net.training)
        return {**super().train_epoch(ctx), "net_training": training}


class PredictsEachEpoch(TorchTrainable):
    """Logs a prediction after every epoch, as on_epoch_end invites (predict sets eval mode)."""

    def on_epoch_end(self, logs: dict[str, float]) -> None:
        self.predict(np.zeros((1, 4), np.float32))


@pytest.mark.parametrize("split", [0.0, 0.25])
def test_every_epoch_of_a_users_procedure_trains_in_training_mode(split: float) -> None:
    """A predict in on_epoch_end left the network in eval mode, and a procedure of one's own
    trained every epoch after the first with dropout off and batch norm frozen."""
    net = Sequential([("Linear", {"in_features": 4, "out_features": 16}), ("ReLU", {}),
                      ("Dropout", {"p": 0.5}), ("Linear", {"in_features": 16,
                                                           "out_features": 3})])
    trained = PredictsEachEpoch(net, Optimizer("Adam", lr=1e-2), procedure=ModeSeen(),
                                spec=TrainSpec(epochs=4, seed=0, validation_split=split))
    trained.train(classification_data(n=120))
    assert [h["net_training"] for h in trained.train_state.history] == [1.0] * 4
