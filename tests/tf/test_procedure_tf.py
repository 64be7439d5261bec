"""Training procedures as components of KerasTrainable: a user's own ``train_step`` trains
with dryml's validation, early stopping, history and resume; the shipped MixupProcedure and
GradientAccumulation; saved, selected, searched over and deterministic like any component."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")

from dryml import ObjectDef, load_object, save_object
from dryml.context import compute_context
from dryml.errors import ConfigurationError
from dryml.models import EarlyStopping, TrainingProcedure, TrainSpec
from dryml.repo import Repo, Selector
from dryml.search import Choice, Search
from dryml.testing.trainers import classification_data
from dryml_tf.models import (
    GradientAccumulation,
    KerasProcedure,
    KerasTrainable,
    MixupProcedure,
    Optimizer,
    Sequential,
    StepContext,
)


def mlp(width: int = 16, dropout: float = 0.0) -> Sequential:
    layers: list[Any] = [("Dense", {"units": width, "activation": "relu"})]
    if dropout:
        layers.append(("Dropout", {"rate": dropout}))
    return Sequential([*layers, ("Dense", {"units": 3})], input_shape=(4,))


def model(procedure: Any = None, epochs: int = 3, early: EarlyStopping | None = None,
          batch_size: int = 32, split: float = 0.25, optimizer: Any = None,
          dropout: float = 0.0) -> KerasTrainable:
    return KerasTrainable(mlp(dropout=dropout), optimizer or Optimizer("Adam", learning_rate=2e-2),
                          spec=TrainSpec(epochs=epochs, batch_size=batch_size,
                                         validation_split=split, early_stopping=early, seed=0),
                          procedure=procedure)


def predictions(trained: KerasTrainable) -> np.ndarray:
    return np.asarray(trained.eval(classification_data(n=200, seed=1)).peek()[0])


class ClippedStep(KerasProcedure):
    """A user's procedure: Keras' step with the gradients clipped to a global norm."""

    def __init__(self, max_norm: float = 1.0) -> None:
        self.max_norm = max_norm

    def train_step(self, ctx: StepContext, data: Any) -> Any:
        import tensorflow as tf

        x, y = data
        with tf.GradientTape() as tape:
            y_pred = ctx.model(x, training=True)
            loss = ctx.loss(x, y, y_pred)
        weights = ctx.model.trainable_weights
        grads, _ = tf.clip_by_global_norm(tape.gradient(loss, weights), self.max_norm)
        ctx.optimizer.apply_gradients(zip(grads, weights, strict=True))
        return {**ctx.metrics(x, y, y_pred), "loss": loss}


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


def test_a_users_train_step_gets_validation_early_stopping_and_history() -> None:
    # nothing after epoch 1 improves val_loss by 10: early stopping ends the run after epoch 2
    trained = model(ClippedStep(max_norm=0.5), epochs=20, early=EarlyStopping(patience=1, min_delta=10.0))
    trained.train(classification_data(n=300))
    history, progress = trained.train_state.history, trained.train_state.progress
    assert [h["epoch"] for h in history] == [1.0, 2.0]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history[-1])
    assert progress["stopped_epoch"] == 2 and progress["best_epoch"] == 1
    assert history[-1]["val_accuracy"] > 0.8


def test_mixup_saves_with_the_model_and_resumes_identically(tmp_path: Path) -> None:
    parts = (mlp(dropout=0.2), Optimizer("Adam", learning_rate=2e-2))
    spec = TrainSpec(epochs=4, validation_split=0.25, early_stopping=EarlyStopping(patience=10),
                     seed=3)
    reference = KerasTrainable(*parts, spec=spec, procedure=MixupProcedure(alpha=0.3))
    reference.train(classification_data(n=300))
    path = tmp_path / "checkpoint.dry"
    crashing = Checkpointing(*parts, spec=spec, procedure=MixupProcedure(alpha=0.3), path=str(path),
                             crash_after=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.train(classification_data(n=300))
    resumed = load_object(path, trust=[__name__])
    assert isinstance(resumed.procedure, MixupProcedure) and resumed.procedure.alpha == 0.3
    resumed.crash_after = None
    resumed.train(classification_data(n=300))
    assert resumed.train_state.history == reference.train_state.history
    assert np.array_equal(predictions(resumed), predictions(reference))


def test_gradient_accumulation_is_a_larger_batch() -> None:
    # 4 accumulated batches of 30 rows (same order) step SGD as one batch of 120 rows would
    sgd = Optimizer("SGD", learning_rate=0.1)
    accumulated = model(GradientAccumulation(steps=4), batch_size=30, split=0.0, optimizer=sgd)
    large = model(None, batch_size=120, split=0.0, optimizer=sgd)
    for trained in (accumulated, large):
        trained.train(classification_data(n=480))
    np.testing.assert_allclose(predictions(accumulated), predictions(large), rtol=1e-4,
                               atol=1e-6)


def test_selector_finds_models_by_procedure(tmp_path: Path) -> None:
    repo = Repo(str(tmp_path / "repo"), create=True)
    built = {"default": model(), "mixup": model(MixupProcedure(alpha=0.4)),
             "accumulate": model(GradientAccumulation(steps=2)), "clipped": model(ClippedStep())}
    for m in built.values():
        repo.add_object(m)
    names = {m.dry_id: name for name, m in built.items()}

    def found(procedure: Selector) -> set[str]:
        return {names[m.dry_id] for m in repo.get(
            Selector(KerasTrainable, kwargs={"procedure": procedure}))}

    assert found(Selector(MixupProcedure, kwargs={"alpha": 0.4})) == {"mixup"}
    assert found(Selector(GradientAccumulation)) == {"accumulate"}
    assert found(Selector(TrainingProcedure)) == {"mixup", "accumulate", "clipped"}


def test_search_over_a_choice_of_procedures_is_deterministic(tmp_path: Path) -> None:
    space = ObjectDef(KerasTrainable, ObjectDef(Sequential, mlp(8).layers, input_shape=(4,)),
                      optimizer=ObjectDef(Optimizer, "Adam", learning_rate=2e-2),
                      spec=ObjectDef(TrainSpec, epochs=2),
                      procedure=Choice(ObjectDef(KerasProcedure),
                                       ObjectDef(MixupProcedure, alpha=0.3),
                                       labels=["keras", "mixup"]))
    result = Search(space, metric="accuracy", repo=str(tmp_path / "repo"), name="procedures",
                    sampler="grid", n_trials=2).run(classification_data(n=300),
                                                    classification_data(n=100, seed=1))
    assert [t["status"] for t in result.trials] == ["complete", "complete"]
    assert {t["params"]["procedure"] for t in result.trials} == {"keras", "mixup"}
    mixup = Repo(str(tmp_path / "repo")).get(
        Selector(KerasTrainable, kwargs={"procedure": Selector(MixupProcedure)}))
    # (an attribute loads the lazy entry: Trainable.train_state, a property, does not yet)
    assert len(mixup) == 1 and isinstance(mixup[0].procedure, MixupProcedure) and mixup[0].trained
    # the trial's definition with its dry_id (seed="auto") trains the same as the trial did
    again = mixup[0].definition().build()
    again.train(classification_data(n=300))
    assert again.train_state.history == mixup[0].train_state.history


def test_bad_procedures_are_refused_with_a_fix() -> None:
    with pytest.raises(ConfigurationError, match="KerasProcedure"):
        KerasTrainable(mlp(), procedure=Optimizer("Adam"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="alpha"):
        MixupProcedure(-1)
    with pytest.raises(ConfigurationError, match="steps"):
        GradientAccumulation(1.5)  # type: ignore[arg-type]


def test_a_definition_with_a_procedure_is_json_and_imports_no_framework() -> None:
    script = textwrap.dedent("""
        import json, sys
        from dryml import ObjectDef
        from dryml_tf.models import GradientAccumulation, KerasTrainable, Sequential
        net = Sequential([("Dense", {"units": 3})], input_shape=(4,))
        model = KerasTrainable(net, procedure=GradientAccumulation(steps=2))
        d = ObjectDef.from_dict(json.loads(json.dumps(model.definition().to_dict())))
        assert d.build().procedure.steps == 2
        bad = [m for m in ("tensorflow", "keras") if m in sys.modules]
        assert not bad, f"building a definition imported {bad}"
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


STOP_AT: dict[str, int | None] = {"step": None}


class FailsAtStep(KerasProcedure):
    """Keras' own step, but raises (as a KeyboardInterrupt, an out-of-memory error or a NaN
    check would) when the optimizer reaches ``STOP_AT["step"]`` (read when traced)."""

    def train_step(self, ctx: StepContext, data: Any) -> Any:
        import tensorflow as tf

        out = type(ctx.model).train_step(ctx.model, data)
        if STOP_AT["step"] is not None:
            tf.debugging.assert_less(ctx.optimizer.iterations,
                                     tf.constant(STOP_AT["step"], tf.int64),
                                     message="simulated interruption")
        return out


@compute_context({"tf": {}})
def interrupted_mid_epoch_then_trained_again() -> dict[str, Any]:
    """In place (in this tf worker): 8 steps per epoch, stopped at the 20th optimizer step
    (in epoch 3), saved, trained again in place and from the file; and the uninterrupted
    training."""
    import io
    import warnings

    data = classification_data(n=320)
    reference = model(FailsAtStep(), epochs=5)
    reference.train(data)
    interrupted = model(FailsAtStep(), epochs=5)
    STOP_AT["step"] = 20
    try:
        interrupted.train(data)
        raised = ""
    except Exception as exc:  # noqa: BLE001 - TensorFlow's error type for a failed assert
        raised = str(exc)
    STOP_AT["step"] = None
    progress = dict(interrupted.train_state.progress)
    buffer = io.BytesIO()
    save_object(interrupted, buffer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        interrupted.train(data)
    from_file = load_object(io.BytesIO(buffer.getvalue()), trust=[__name__])
    from_file.train(data)
    return {"raised": raised, "progress": progress,
            "warnings": [str(w.message) for w in caught],
            "reference": (predictions(reference), reference.train_state.history),
            "in_place": (predictions(interrupted), interrupted.train_state.history),
            "from_file": (predictions(from_file), from_file.train_state.history)}


def test_a_training_that_raised_mid_epoch_starts_over_instead_of_resuming_wrong() -> None:
    """Its weights and Adam state were from the middle of epoch 3 while its progress said
    epoch 2: trained again (in place, or from a file saved after the error) it took extra
    optimizer steps and reported success with other predictions (max difference 0.12; found
    by review). It now starts over, says so, and ends as the uninterrupted training."""
    out = interrupted_mid_epoch_then_trained_again()
    assert "simulated interruption" in out["raised"]
    assert out["progress"]["epoch"] == 2 and out["progress"]["interrupted"] is True
    assert any("starts over from epoch 0" in w for w in out["warnings"])
    expected, history = out["reference"]
    for name in ("in_place", "from_file"):
        got, got_history = out[name]
        assert np.array_equal(got, expected), name
        assert got_history == history, name


def test_an_ema_optimizer_resumed_after_its_last_epoch_ends_with_the_averages(
        tmp_path: Path) -> None:
    """A file saved by on_epoch_end after the last epoch, trained again, ran only what fit's
    end does: it restored early stopping's best weights but skipped Keras' swap of an EMA
    optimizer's averages into the weights (max probability difference 0.17; found by
    review)."""
    optimizer = Optimizer("AdamW", learning_rate=0.02, use_ema=True, ema_momentum=0.9)
    path = tmp_path / "last.dry"
    reference = Checkpointing(mlp(), optimizer, spec=TrainSpec(epochs=4, batch_size=32, seed=0),
                              path=str(path))
    reference.train(classification_data(n=300))
    resumed = load_object(path, trust=[__name__])
    assert resumed.train_state.progress["epoch"] == 4 and resumed.train_state.status == "training"
    resumed.train(classification_data(n=300))
    assert np.array_equal(predictions(resumed), predictions(reference))
