"""Training and prediction of :class:`dryml_tf.models.KerasTrainable` (imports Keras: used only
in a ``tf`` worker)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm  # type: ignore[import-untyped]

from dryml._objectdef import ObjectDef
from dryml.errors import ConfigurationError, DatasetError

if TYPE_CHECKING:
    from dryml.data import Dataset
    from dryml_tf.models import KerasTrainable

__all__ = ["keras_callable", "keras_class", "predict", "run_fit"]

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


def as_arrays(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of every example of a supervised Dataset (any framework) as numpy arrays."""
    ds = data.numpy()
    if ds.indexed:
        ds = ds.as_not_indexed()
    if not ds.supervised:
        raise DatasetError("training needs a supervised Dataset of (x, y) elements; use "
                           "NumpyDataset((x, y), supervised=True) or .as_supervised()")
    xs, ys = [], []
    for x, y in ds:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    if not xs:
        raise DatasetError("the training Dataset has no examples")
    join = np.concatenate if ds.batched else np.stack
    return join(xs), join(ys)


def split_off(x: np.ndarray, y: np.ndarray, fraction: float, seed: int
              ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A random ``fraction`` of the rows (chosen with ``seed``) for validation; both parts keep
    the original row order."""
    n = len(x)
    n_valid = round(n * fraction)
    if n_valid < 1 or n_valid >= n:
        raise ConfigurationError(
            f"validation_split={fraction} of {n} examples leaves no training or no "
            "validation examples; change validation_split or pass validation data")
    order = np.random.default_rng(seed).permutation(n)
    valid, train = np.sort(order[:n_valid]), np.sort(order[n_valid:])
    return (x[train], y[train]), (x[valid], y[valid])


class ProgressBar(keras.callbacks.Callback):  # type: ignore[misc]
    """A tqdm bar over epochs (to stderr): epoch, training loss and validation metrics."""

    def __init__(self, total: int, desc: str) -> None:
        super().__init__()
        self.total, self.desc = total, desc
        self.bar: Any = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Open the bar."""
        self.bar = tqdm(total=self.total, desc=self.desc, unit="epoch", file=sys.stderr,
                        dynamic_ncols=True)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Advance one epoch; show its metrics."""
        if self.bar is not None:
            shown = {k: f"{float(v):.4g}" for k, v in (logs or {}).items()
                     if k == "loss" or k.startswith("val_")}
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Close the bar (early stopping may leave it short of its total)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Recorder(keras.callbacks.Callback):  # type: ignore[misc]
    """Writes each epoch's logs to the trainable's train state and calls its
    ``on_epoch_end``; checks that early stopping's metric exists."""

    def __init__(self, trainable: KerasTrainable, monitor: str | None) -> None:
        super().__init__()
        self.trainable, self.monitor = trainable, monitor

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Record the epoch."""
        logs = logs or {}
        if self.monitor is not None and self.monitor not in logs:
            raise ConfigurationError(
                f"early stopping monitors {self.monitor!r}, which training does not report; "
                f"it reports {sorted(logs)} (add the metric to KerasTrainable's metrics)")
        row = {"epoch": float(epoch + 1), **{k: float(v) for k, v in logs.items()}}
        state = self.trainable.train_state
        state.history.append(row)
        state.progress["epoch"] = epoch + 1
        self.trainable.on_epoch_end(dict(row))


def _compile(trainable: KerasTrainable) -> keras.Model:
    from dryml_tf.models import Metric

    model = _build_network(trainable.model)
    model.compile(optimizer=trainable.optimizer.build(), loss=trainable.loss.build(),
                  metrics=[m.build() if isinstance(m, Metric) else m
                           for m in trainable.metrics])
    return model


def run_fit(trainable: KerasTrainable, data: Dataset, valid: Dataset | None) -> None:
    """Build, compile and fit the trainable's model as its TrainSpec says."""
    spec = trainable.spec
    x, y = as_arrays(data)
    validation: tuple[np.ndarray, np.ndarray] | None = None
    if valid is not None:
        validation = as_arrays(valid)
    elif spec.validation_split > 0:
        (x, y), validation = split_off(x, y, spec.validation_split, spec.seed)
    # Seeds the initial weights, shuffling and dropout; op determinism makes the kernels
    # themselves reproducible (a process-wide switch: the worker keeps it on).
    keras.utils.set_random_seed(spec.seed)
    tf.config.experimental.enable_op_determinism()
    model = _compile(trainable)
    trainable._keras = model
    state = trainable.train_state
    state.history, state.progress = [], {"epoch": 0}
    stopping = spec.early_stopping if validation is not None else None
    callbacks: list[Any] = [
        Recorder(trainable, None if stopping is None else stopping.monitor),
        ProgressBar(spec.epochs, f"keras {trainable.task}")]
    early: Any = None
    if stopping is not None:
        early = keras.callbacks.EarlyStopping(
            monitor=stopping.monitor, patience=stopping.patience, min_delta=stopping.min_delta,
            mode=stopping.mode, restore_best_weights=True)
        callbacks.append(early)
    model.fit(x, y, batch_size=spec.batch_size, epochs=spec.epochs, verbose=0,
              validation_data=validation, shuffle=spec.shuffle, callbacks=callbacks)
    if early is not None:
        state.progress["best_epoch"] = int(early.best_epoch) + 1
        state.progress["best"] = float(early.best)
        if early.stopped_epoch > 0:
            state.progress["stopped_epoch"] = int(early.stopped_epoch) + 1


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]


def predict(trainable: KerasTrainable, x: Any) -> np.ndarray:
    """Class probabilities (classifier) or values (regressor) for one numpy batch."""
    out = np.asarray(keras.ops.convert_to_numpy(trainable._keras(np.asarray(x),
                                                                 training=False)))
    if trainable.task == "regressor":
        return out.squeeze(-1) if out.ndim > 1 and out.shape[-1] == 1 else out
    if out.shape[-1] == 1:  # one output: a binary problem's P(class 1)
        p = 1.0 / (1.0 + np.exp(-out)) if trainable.loss.from_logits else out
        return np.concatenate([1 - p, p], axis=-1)
    return _softmax(out) if trainable.loss.from_logits else out
