"""Training and prediction of :class:`dryml_tf.models.KerasTrainable` (imports Keras: used only
in a ``tf`` worker)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from dryml import progress
from dryml._objectdef import ObjectDef
from dryml.errors import ConfigurationError
from dryml.models import split_validation, starts_over, supervised_arrays
from dryml_tf._keras_state import restore_rng
from dryml_tf._procedure import StepContext

if TYPE_CHECKING:
    from dryml.data import Dataset
    from dryml.format import LoadStore, SaveStore
    from dryml_tf.models import KerasTrainable

__all__ = ["keras_callable", "keras_class", "load_training", "predict", "run_fit",
           "save_training"]

_EXAMPLES = {"layer": "Dense", "optimizer": "Adam", "loss": "SparseCategoricalCrossentropy",
             "metric": "AUC"}


def keras_class(namespace: str, name: str, base: type, what: str) -> Any:
    """The class ``name`` of ``keras.<namespace>``, checked to be a ``base``."""
    cls = getattr(getattr(keras, namespace), name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigurationError(
            f"{what} {name!r} is not a class of keras.{namespace}; use a class name such as "
            f"{_EXAMPLES[what]!r}")
    return cls


def keras_callable(namespace: str, name: str, base: type, what: str,
                   kwargs: dict[str, Any]) -> Any:
    """An instance of class ``name`` of ``keras.<namespace>`` built with ``kwargs``, or the
    Keras function (or alias, e.g. ``"mse"``) of that name when it takes no kwargs."""
    found = getattr(getattr(keras, namespace), name, None)
    if isinstance(found, type) and issubclass(found, base):
        return found(**kwargs)
    if kwargs:
        raise ConfigurationError(
            f"{what} {name!r} is not a class of keras.{namespace}, so it takes no keyword "
            f"arguments; use a class such as {_EXAMPLES[what]!r} with {sorted(kwargs)}")
    try:
        return getattr(keras, namespace).get(name)
    except ValueError:
        raise ConfigurationError(
            f"{what} {name!r} is neither a class nor a function of keras.{namespace}; use e.g. "
            f"{_EXAMPLES[what]!r}") from None


def _build_network(network: Any) -> keras.Model:
    """The Keras model of a network component: a Network, an ObjectDef of one, or an Object
    holding its model as ``.model``."""
    from dryml_tf.models import Network

    if isinstance(network, ObjectDef):
        network = network.build()
    model = network.build() if isinstance(network, Network) else getattr(network, "model", None)
    if not isinstance(model, keras.Model):
        raise ConfigurationError(
            f"the network {type(network).__qualname__} gave no keras.Model; pass a Sequential, "
            "a Network subclass whose build() returns a model, or an Object (or its ObjectDef) "
            "holding the model as .model")
    return model


class ProgressBar(keras.callbacks.Callback):  # type: ignore[misc]
    """The model's line on the caller's progress display (:mod:`dryml.progress`): epoch,
    training loss and validation metrics; says when early stopping ended training.

    ``trainable`` is the KerasTrainable (its label, see :func:`dryml.progress.label_of`) or a
    label.
    """

    def __init__(self, total: int, trainable: Any, initial: int = 0) -> None:
        super().__init__()
        self.total, self.initial, self.trainable = total, initial, trainable
        self.label = trainable if isinstance(trainable, str) else progress.label_of(trainable)
        self.track: progress.Track | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Open the track."""
        self.track = progress.track(self.label, framework="tf", total=self.total,
                                    initial=self.initial)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Advance to ``epoch + 1``; show its loss and validation metrics."""
        if self.track is not None:
            self.track.update(epoch + 1, {k: float(v) for k, v in (logs or {}).items()
                                          if k == "loss" or k.startswith("val_")})

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Say so if early stopping ended training; close the track."""
        if self.track is None:
            return
        state = getattr(getattr(self.trainable, "train_state", None), "progress", {})
        stopping = getattr(getattr(self.trainable, "spec", None), "early_stopping", None)
        if "stopped_epoch" in state and stopping is not None:
            self.track.status(progress.early_stopping_message(
                "epoch", int(state["stopped_epoch"]), stopping.monitor,
                float(state["best"]) if "best" in state else None,
                int(state["best_epoch"]) if "best_epoch" in state else None))
        self.track.close()
        self.track = None

    def failed(self, exc: BaseException) -> None:
        """Close the track saying so: Keras skips ``on_train_end`` when fit raises, and the
        line showed an earlier epoch as where training ended."""
        if self.track is not None:
            self.track.close(progress.ended_by(type(exc)))
            self.track = None


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):  # type: ignore[misc]
    """Keras' EarlyStopping whose state (best value and epoch, epochs waited, best weights)
    can be set when a saved training resumes."""

    def __init__(self, resume: dict[str, Any] | None, fallback: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resume = resume
        #: the direction of dryml's name rule, for mode="auto" where Keras cannot tell
        self.fallback = fallback

    def _set_monitor_op(self) -> None:
        """``mode="auto"`` as Keras reads it: the compiled metric's own direction (a
        CosineSimilarity under any name is better higher; dryml's name rule took it for a loss
        and kept the worst epoch), and dryml's name rule for a metric Keras cannot place."""
        try:
            super()._set_monitor_op()
        except ValueError:
            if self.fallback is None:
                raise
            self.mode = self.fallback
            super()._set_monitor_op()

    def _is_improvement(self, monitor_value: Any, reference_value: Any) -> bool:
        """As dryml's :class:`~dryml.models.EarlyStopping`: an epoch whose monitor is NaN is
        no improvement, and any number improves on a NaN best (Keras took a first epoch's NaN
        for the best, never improved on it, stopped and restored that epoch's weights)."""
        if monitor_value is None or math.isnan(float(monitor_value)):
            return False
        if reference_value is None or math.isnan(float(reference_value)):
            return True
        return bool(super()._is_improvement(monitor_value, reference_value))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """A monitor NaN in every epoch left no best epoch: the last epoch's weights stay
        (Keras restored the first's), as in the other backends."""
        if self.best is None or self.best != self.best:
            self.best_weights = None
        super().on_train_end(logs)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Reset, then take the saved state when resuming."""
        super().on_train_begin(logs)
        if self.resume:
            self.best, self.best_epoch = self.resume["best"], self.resume["best_epoch"]
            self.wait, self.best_weights = self.resume["wait"], self.resume["best_weights"]


class Recorder(keras.callbacks.Callback):  # type: ignore[misc]
    """Writes each epoch's logs (and early stopping's state) to the trainable's train state
    and calls its ``on_epoch_end``; checks that early stopping's metric exists."""

    def __init__(self, trainable: KerasTrainable, early: ResumableEarlyStopping | None) -> None:
        super().__init__()
        self.trainable, self.early = trainable, early

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Record the epoch."""
        logs = logs or {}
        early = self.early
        if early is not None and early.monitor not in logs:
            raise ConfigurationError(
                f"early stopping monitors {early.monitor!r}, which training does not report; "
                f"it reports {sorted(logs)} (add the metric to KerasTrainable's metrics)")
        row = {"epoch": float(epoch + 1), **{k: float(v) for k, v in logs.items()}}
        state = self.trainable.train_state
        state.history.append(row)
        state.progress["epoch"] = epoch + 1
        if early is not None:
            # the epochs waited also while no epoch was best (a monitor NaN so far): a
            # checkpoint resumed counted them from 0 again and ran past the uninterrupted stop
            state.progress["wait"] = int(early.wait)
        if early is not None and early.best is not None:
            state.progress.update(best=float(early.best), best_epoch=int(early.best_epoch) + 1)
            self.trainable._best_weights = early.best_weights
        if early is not None and self.model.stop_training:
            # also when no epoch was best (a monitor NaN in every epoch): training ended here
            state.progress["stopped_epoch"] = epoch + 1
        self.trainable.on_epoch_end(dict(row))


def _compile(trainable: KerasTrainable) -> keras.Model:
    model = _build_network(trainable.model)
    model.compile(optimizer=trainable.procedure.build_optimizer(trainable),
                  loss=trainable.loss.build(),
                  metrics=[_metric(m, trainable) for m in trainable.metrics])
    return model


def _metric(metric: Any, trainable: KerasTrainable) -> Any:
    """A metric for ``compile``: ``"accuracy"`` with a binary loss taking logits thresholds
    the logits at 0 (Keras' BinaryAccuracy thresholds at 0.5, the right cut for
    probabilities, so the history's accuracy, and early stopping on it, would be wrong)."""
    from dryml_tf.models import Metric

    if isinstance(metric, Metric):
        return metric.build()
    loss = trainable.loss
    if (metric in ("accuracy", "acc") and loss.from_logits
            and loss.name.lower().replace("_", "").startswith("binary")):
        return keras.metrics.BinaryAccuracy(name=metric, threshold=0.0)
    return metric


def _stream(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, shuffle: bool,
            first: int, last: int) -> Any:
    """Training batches of epochs ``first..last-1``; each epoch's order depends only on
    ``(seed, epoch)``, so a resumed training sees the batches the uninterrupted one would."""
    xs, ys = tf.constant(x), tf.constant(y)
    n = len(x)

    def epoch_indices(epoch: Any) -> Any:
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(
                order, seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    return (tf.data.Dataset.range(first, last).flat_map(epoch_indices)
            .map(lambda i: (tf.gather(xs, i), tf.gather(ys, i)))
            .prefetch(tf.data.AUTOTUNE))


@contextlib.contextmanager
def _closing_on_failure(bar: ProgressBar) -> Iterator[None]:
    """Close the progress line with "failed" when ``fit`` raises (a callback's error too)."""
    try:
        yield
    except BaseException as exc:
        bar.failed(exc)
        raise


@contextlib.contextmanager
def _procedure_step(trainable: KerasTrainable, model: keras.Model, seed: int) -> Iterator[None]:
    """While fitting, the model's ``train_step`` is the procedure's (when it has its own)."""
    procedure = trainable.procedure
    if not procedure.replaces_train_step():
        yield
        return
    ctx = StepContext(trainable, model, seed)

    def train_step(data: Any) -> Any:
        return procedure.train_step(ctx, data)

    model.train_step, model.train_function = train_step, None
    try:
        yield
    finally:  # the model goes back to Keras' step (a later fit rebuilds its function)
        del model.train_step
        model.train_function = None


def run_fit(trainable: KerasTrainable, data: Dataset, valid: Dataset | None) -> None:
    """Build, compile and fit the trainable's model as its TrainSpec says; a training saved
    mid-way (status "training", a model and progress) continues from its last epoch."""
    spec, seed = trainable.spec, trainable.train_seed
    x, y = supervised_arrays(data)
    validation: tuple[np.ndarray, np.ndarray] | None = None
    if valid is not None:
        validation = supervised_arrays(valid, "validation")
    elif spec.validation_split > 0:  # the split every backend makes with this seed
        (x, y), validation = split_validation(x, y, spec.validation_split, spec.split_seed)
    state = trainable.train_state
    resumable = trainable._keras is not None and not starts_over(state)
    first = int(state.progress.get("epoch", 0)) if resumable else 0
    # Seeds the initial weights and dropout (batch order is seeded in _stream); op determinism
    # makes the kernels reproducible too (a process-wide switch: the worker keeps it on).
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    if first == 0:
        trainable._keras = _compile(trainable)
        trainable._best_weights = None
        state.history, state.progress = [], {"epoch": 0}
    model = trainable._keras
    if trainable.task == "classifier" and len(x):
        _check_classifier(trainable, model, x[:min(64, spec.batch_size)], y)
    stopping = spec.early_stopping if validation is not None else None
    early: ResumableEarlyStopping | None = None
    if stopping is not None:
        resume = None
        if first and "wait" in state.progress:
            resume = {"best": state.progress.get("best"), "wait": state.progress["wait"],
                      "best_epoch": state.progress.get("best_epoch", 1) - 1,
                      "best_weights": trainable._best_weights
                      if "best" in state.progress else None}
        early = ResumableEarlyStopping(
            resume, monitor=stopping.monitor, patience=stopping.rounds,
            min_delta=stopping.min_delta, mode="auto" if stopping.auto else stopping.mode,
            fallback=stopping.mode, restore_best_weights=True)
    bar = ProgressBar(spec.epochs, trainable, initial=first)
    callbacks = [bar, *([early] if early is not None else []), Recorder(trainable, early)]
    if first >= spec.epochs or "stopped_epoch" in state.progress:
        # saved after its last epoch: only what fit's end would have done is left, in
        # Keras' order: the optimizer's final values (an EMA optimizer's averages), then
        # early stopping's best weights (the averages were skipped before)
        if isinstance(model.optimizer, keras.optimizers.Optimizer) and spec.epochs > 0:
            model.optimizer.finalize_variable_values(model.trainable_weights)
        if trainable._best_weights is not None:
            model.set_weights(trainable._best_weights)
    else:
        with _procedure_step(trainable, model, seed), _closing_on_failure(bar):
            model.fit(_stream(x, y, spec.batch_size, seed, spec.shuffle, first, spec.epochs),
                      epochs=spec.epochs, initial_epoch=first, verbose=0, shuffle=False,
                      steps_per_epoch=-(-len(x) // spec.batch_size),
                      validation_data=validation, validation_batch_size=spec.batch_size,
                      callbacks=callbacks)
    trainable._best_weights = None
    state.progress.pop("wait", None)


def save_training(trainable: KerasTrainable, store: SaveStore) -> None:
    """What a training saved mid-way needs beyond the model (whose file keeps its weights,
    optimizer and random state) to resume exactly: early stopping's best weights."""
    if trainable._best_weights is not None:
        store.put("best_weights", [np.asarray(w) for w in trainable._best_weights])


def load_training(trainable: KerasTrainable, store: LoadStore) -> None:
    """The mirror of :func:`save_training`; a file written before the model kept its random
    state holds that state as ``rng``."""
    arrays = store.get("rng", None)
    if arrays is not None:
        restore_rng(trainable._keras, arrays)
    weights = store.get("best_weights", None)
    trainable._best_weights = None if weights is None else list(weights)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]


#: Keras' cross-entropies by kind (names as ``Loss`` takes them, without "_", lower case)
_CATEGORICAL = ("sparsecategoricalcrossentropy", "categoricalcrossentropy",
                "categoricalfocalcrossentropy")
_BINARY = ("binarycrossentropy", "binaryfocalcrossentropy")


def _loss_kind(name: str) -> str | None:
    """``"categorical"``, ``"binary"`` or None (not one of Keras' cross-entropies)."""
    flat = name.replace("_", "").lower()
    return "categorical" if flat in _CATEGORICAL else "binary" if flat in _BINARY else None


def _numpy(tensor: Any) -> np.ndarray:
    out = np.asarray(keras.ops.convert_to_numpy(tensor))
    if out.dtype.name in ("float16", "bfloat16"):  # mixed precision: score in float32
        out = out.astype(np.float32)
    return out


def _layers(model: Any) -> list[Any]:
    """Every layer of ``model``, nested models' included."""
    found = getattr(model, "_flatten_layers", None)
    return list(found(include_self=False)) if found is not None else []


def _check_classifier(trainable: KerasTrainable, model: keras.Model, x: np.ndarray,
                      y: np.ndarray) -> None:
    """Refuse, before training, a classifier whose cross-entropy cannot mean what it says:
    Keras trains on such setups without an error, and the probabilities come out wrong.

    * one output with a categorical loss (one output per class is what it scores);
    * a loss taking probabilities (``from_logits=False``) over outputs that are not (a
      network ending without a softmax or sigmoid);
    * labels the loss cannot read: class indices outside ``0..outputs-1`` for a sparse
      loss, targets outside [0, 1] for a binary one (-1/+1 trained on a negative loss).
    """
    loss = trainable.loss
    kind = _loss_kind(loss.name)
    if kind is None or any(getattr(layer, "stateful", False) for layer in _layers(model)):
        return  # (a stateful layer's state would move on, and its batch size is fixed)
    out_t = model(x, training=False)
    out = _numpy(out_t).astype(np.float64)
    width = out.shape[-1] if out.ndim > 1 else 1
    if kind == "categorical" and width == 1:
        raise ConfigurationError(
            f"{loss.name} needs one output per class, but the network gives one output per "
            "row: for a binary problem with one output use Loss('BinaryCrossentropy', "
            "from_logits=True), or give the last layer one unit per class")
    if not loss.from_logits and not hasattr(out_t, "_keras_logits"):
        # (outputs of a Keras softmax or sigmoid carry their logits, which the loss uses)
        rows = np.abs(out.sum(axis=-1) - 1).max() if kind == "categorical" else 0.0
        if out.min() < 0 or out.max() > 1 or rows > 1e-2:
            summing = f", rows summing to {1 + rows:.3g}" if rows > 1e-2 else ""
            raise ConfigurationError(
                f"{loss.name} takes probabilities (from_logits=False), but the network's "
                f"outputs are not (values from {out.min():.3g} to {out.max():.3g}{summing}): "
                "end the network in a softmax (a sigmoid for a binary cross-entropy), or use "
                f"Loss({loss.name!r}, from_logits=True)")
    labels = np.asarray(y)
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    if not np.issubdtype(labels.dtype, np.number):
        return  # strings: Keras' own error names them
    ignored = loss.kwargs.get("ignore_class")
    if ignored is not None:  # padding, say: a value the loss skips
        labels = labels[labels != ignored]
    if not labels.size:
        return
    low, high = float(labels.min()), float(labels.max())
    if kind == "categorical" and "sparse" in loss.name.lower() and (
            low < 0 or high >= width or not np.all(np.mod(labels, 1) == 0)):
        raise ConfigurationError(
            f"{loss.name} takes class indices 0..{width - 1} (the network has {width} "
            f"outputs), but the labels hold values from {low:g} to {high:g}: number the "
            "classes from 0")
    if kind == "binary" and (low < 0 or high > 1):
        raise ConfigurationError(
            f"{loss.name} takes targets in [0, 1] (labels 0 and 1), but they hold values from "
            f"{low:g} to {high:g}: map them to 0 and 1 first")


def predict(trainable: KerasTrainable, x: Any) -> np.ndarray:
    """Class probabilities (classifier) or values (regressor) for one numpy batch."""
    model = trainable._keras
    out_t = model(np.asarray(x), training=False)
    half = np.asarray(keras.ops.convert_to_numpy(out_t)).dtype.itemsize < 4
    out = _numpy(out_t)
    if trainable.task == "regressor":
        return out.squeeze(-1) if out.ndim > 1 and out.shape[-1] == 1 else out
    raw = getattr(out_t, "_keras_logits", None)
    if (raw is not None and _loss_kind(trainable.loss.name) == "categorical" and out.ndim > 1
            and out.shape[-1] > 1 and np.abs(out.sum(axis=-1) - 1).max() > 1e-3):
        # a categorical cross-entropy finds the logits under the network's last activation
        # and trains their softmax, whatever that activation was (several sigmoids): so are
        # the probabilities. Under mixed precision the loss casts the float16 outputs first,
        # which loses the logits, and reads the outputs scaled to sum to 1.
        if half:
            return out / out.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]
        return _softmax(_numpy(raw))
    # otherwise a 1-d output (one logit per row) would get a softmax over the batch, and a
    # network ending in a sigmoid or softmax would get it twice with a from_logits loss
    # (Keras trains such a model on the logits before that activation, and only warns);
    # a Keras softmax or sigmoid marks its output, also inside a nested model or under a
    # layer that passes it on (Dropout at inference)
    logits = trainable.loss.from_logits and not (raw is not None
                                                 or _ends_in_probabilities(model))
    if out.ndim == 1:
        out = out[:, None]
    if out.shape[-1] == 1:  # one output: a binary problem's P(class 1)
        p = 1.0 / (1.0 + np.exp(-out)) if logits else out
        return np.concatenate([1 - p, p], axis=-1)
    if logits and trainable.loss.independent:  # multilabel: each output its own sigmoid
        return 1.0 / (1.0 + np.exp(-out))  # type: ignore[no-any-return]
    return _softmax(out) if logits else out


def _ends_in_probabilities(model: Any) -> bool:
    """Whether the model's last layer applies a sigmoid or a softmax."""
    layers = getattr(model, "layers", None)
    if not layers:
        return False
    last = layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return activation in (keras.activations.sigmoid, keras.activations.softmax)
