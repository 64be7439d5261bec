"""Keras models from reusable components: networks, optimizers, losses, metrics,
``KerasTrainable``.

Every component holds only plain values (class names and keyword arguments), so a definition
is JSON, can be selected with a Selector and searched over, and building one imports neither
TensorFlow nor Keras: they are imported inside the methods that run in a ``tf`` worker.

>>> from dryml.models import EarlyStopping, TrainSpec
>>> from dryml_tf.models import KerasTrainable, Loss, Optimizer, Sequential
>>> net = Sequential([("Dense", {"units": 16, "activation": "relu"}), ("Dense", {"units": 3})],
...                  input_shape=(4,))
>>> model = KerasTrainable(net, Optimizer("Adam", learning_rate=1e-2),
...                        Loss("SparseCategoricalCrossentropy", from_logits=True),
...                        TrainSpec(epochs=20, validation_split=0.2,
...                                  early_stopping=EarlyStopping(patience=3), seed=0))
>>> model.task, model.metrics
('classifier', ('accuracy',))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from dryml._object import Object
from dryml._objectdef import ObjectDef
from dryml.errors import ConfigurationError, FormatError
from dryml.models import Trainable, TrainSpec
from dryml_tf._procedure import (
    GradientAccumulation,
    KerasProcedure,
    MixupProcedure,
    StepContext,
)

if TYPE_CHECKING:
    import keras

    from dryml.data import Dataset
    from dryml.format import LoadStore, SaveStore, StoredValue

__all__ = ["GradientAccumulation", "KerasProcedure", "KerasTrainable", "Loss", "Metric",
           "MixupProcedure", "Network", "Optimizer", "Sequential", "StepContext"]

TASKS = ("classifier", "regressor")
#: Layers that run Python code or read files: never built from a definition (a definition can
#: come from a file).
_REFUSED_LAYERS = {"Lambda": "a layer class registered with keras.saving.register_keras_"
                             "serializable, built by a Network subclass",
                   "TFSMLayer": "a Network subclass that builds the model itself"}


def _check_name(name: Any, what: str, example: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{what} name must be a str such as {example!r}, got {name!r}")
    return name


def _check_kwargs(kwargs: Any, where: str) -> dict[str, Any]:
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ConfigurationError(f"{where}: keyword arguments must be a dict with str keys, "
                                 f"got {kwargs!r}")
    return dict(kwargs)


class Network(Object):
    """Base of network components: :meth:`build` returns a new (unbuilt or built) Keras model.

    Subclass it for a custom architecture (e.g. a functional model); keep constructor arguments
    plain (sizes, names) and import Keras inside ``build``, so the definition stays
    framework-free::

        class Residual(Network):
            def __init__(self, width: int):
                self.width = width

            def build(self):
                import keras
                inp = keras.Input((4,))
                h = keras.layers.Dense(self.width, activation="relu")(inp)
                h = keras.layers.Add()([h, keras.layers.Dense(self.width)(h)])
                return keras.Model(inp, keras.layers.Dense(3)(h))

    The trained model is saved with Keras' JSON config in safe mode: use Keras' own layers,
    or layer classes registered with ``keras.saving.register_keras_serializable``.
    """

    def build(self) -> keras.Model:
        """A freshly initialized Keras model (override)."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement build()")


class Sequential(Network):
    """``keras.Sequential`` from ``(keras.layers class name, kwargs)`` pairs and the shape of
    one input example (without the batch dimension).

    >>> Sequential([("Dense", {"units": 8, "activation": "relu"}), ("Dense", {"units": 1})],
    ...            input_shape=(4,)).input_shape
    (4,)

    Names are classes of ``keras.layers`` (``"Dense"``, ``"Conv2D"``, ``"Dropout"``,
    ``"BatchNormalization"``, ``"Flatten"``...), checked when the model is built.
    """

    def __init__(self, layers: Sequence[tuple[str, Mapping[str, Any]]],
                 input_shape: Sequence[int | None]) -> None:
        given: Any = layers  # checked at run time: definitions may come from files
        if isinstance(given, (str, bytes)) or not isinstance(given, Sequence) or not given:
            raise ConfigurationError("Sequential needs a non-empty list of (layer class name, "
                                     "kwargs) pairs")
        checked: list[tuple[str, dict[str, Any]]] = []
        for i, layer in enumerate(layers):
            if (not isinstance(layer, Sequence) or isinstance(layer, str) or len(layer) != 2
                    or not isinstance(layer[0], str)):
                raise ConfigurationError(
                    f"Sequential layer {i} must be a (class name, kwargs) pair such as "
                    f"('Dense', {{'units': 8}}), got {layer!r}")
            if layer[0] in _REFUSED_LAYERS:
                raise ConfigurationError(
                    f"Sequential layer {i}: {layer[0]} is not built from a definition (it runs "
                    f"code or reads files); use {_REFUSED_LAYERS[layer[0]]}")
            checked.append((layer[0], _check_kwargs(layer[1], f"Sequential layer {i}")))
        if (isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence)
                or not all(d is None or (isinstance(d, int) and d > 0) for d in input_shape)):
            raise ConfigurationError(
                f"input_shape is the shape of one example without the batch dimension, e.g. "
                f"(4,) or (28, 28, 1); got {input_shape!r}")
        self.layers = checked
        self.input_shape = tuple(input_shape)

    def build(self) -> keras.Model:
        """The ``keras.Sequential`` of the layers, freshly initialized."""
        import keras

        from dryml_tf._models_fit import keras_class

        layers = [keras_class("layers", name, keras.layers.Layer, "layer")(**kwargs)
                  for name, kwargs in self.layers]
        return keras.Sequential([keras.Input(shape=self.input_shape), *layers])


class Optimizer(Object):
    """A ``keras.optimizers`` optimizer by class name, e.g.
    ``Optimizer("Adam", learning_rate=1e-3)``."""

    def __init__(self, name: str = "Adam", **kwargs: Any) -> None:
        self.name = _check_name(name, "Optimizer", "Adam")
        self.kwargs = kwargs

    def build(self) -> keras.optimizers.Optimizer:
        """A new optimizer."""
        import keras

        from dryml_tf._models_fit import keras_class

        cls = keras_class("optimizers", self.name, keras.optimizers.Optimizer, "optimizer")
        return cls(**self.kwargs)


class Loss(Object):
    """A ``keras.losses`` class (with its kwargs) or function name, e.g.
    ``Loss("SparseCategoricalCrossentropy", from_logits=True)`` or ``Loss("mse")``.

    A classifier whose loss takes logits (``from_logits=True``) predicts the softmax of the
    network's outputs (the sigmoid for a single output, and of each output with a binary
    cross-entropy: a multilabel network); otherwise the network's outputs are the
    probabilities (end it with a softmax, or a sigmoid for multilabel).
    """

    def __init__(self, name: str, **kwargs: Any) -> None:
        self.name = _check_name(name, "Loss", "SparseCategoricalCrossentropy")
        self.kwargs = kwargs

    @property
    def from_logits(self) -> bool:
        """Whether the loss takes logits."""
        return bool(self.kwargs.get("from_logits", False))

    @property
    def independent(self) -> bool:
        """Whether the loss scores each output on its own (a binary cross-entropy: several
        outputs are a multilabel problem's, each with its own sigmoid, not a softmax)."""
        return self.name.replace("_", "").lower() in ("binarycrossentropy",
                                                      "binaryfocalcrossentropy")

    def build(self) -> Any:
        """The loss object (a class instance, or the Keras function for a function name)."""
        import keras

        from dryml_tf._models_fit import keras_callable

        return keras_callable("losses", self.name, keras.losses.Loss, "loss", self.kwargs)


class Metric(Object):
    """A ``keras.metrics`` class (with its kwargs) or name, e.g. ``Metric("AUC", curve="PR")``;
    plain names (``"accuracy"``, ``"mae"``) can be given to :class:`KerasTrainable` as str."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        self.name = _check_name(name, "Metric", "accuracy")
        self.kwargs = kwargs

    def build(self) -> Any:
        """The metric object, or its name when it is a plain Keras name with no kwargs."""
        import keras

        from dryml_tf._models_fit import keras_callable

        if not self.kwargs:
            return self.name  # compile() resolves names ("accuracy" follows the loss)
        return keras_callable("metrics", self.name, keras.metrics.Metric, "metric", self.kwargs)


def _default_loss(task: str) -> Loss:
    if task == "classifier":
        return Loss("SparseCategoricalCrossentropy", from_logits=True)
    return Loss("MeanSquaredError")


class KerasTrainable(Trainable):
    """A Keras model compiled from components and trained with ``fit``.

    * ``model``: a :class:`Sequential`, a :class:`Network` subclass, or an ``ObjectDef`` of an
      Object holding a Keras model as ``.model`` (built in the worker).
    * ``optimizer`` (default ``Optimizer("Adam", learning_rate=1e-3)``), ``loss`` (default
      ``SparseCategoricalCrossentropy(from_logits=True)`` for classifiers,
      ``MeanSquaredError`` for regressors), ``metrics`` (names or :class:`Metric` s; default
      ``("accuracy",)`` for classifiers, ``("mae",)`` for regressors).
    * ``spec``: a :class:`~dryml.models.TrainSpec` (epochs, batch size, validation split,
      early stopping with ``keras.callbacks.EarlyStopping(restore_best_weights=True)``, seed,
      shuffle).
    * ``task``: ``"classifier"`` (``predict`` gives class probabilities) or ``"regressor"``.
    * ``procedure``: how ``fit`` trains, a :class:`KerasProcedure` (the default: Keras' own
      step), e.g. :class:`MixupProcedure` or :class:`GradientAccumulation`, or your own
      subclass; validation, early stopping, history, progress and resume stay dryml's.

    Training runs in a ``tf`` worker, shows a progress bar (epoch, loss, validation metrics)
    on stderr and is deterministic for a given ``spec.seed`` (``keras.utils.set_random_seed``
    and TensorFlow's op determinism, which the worker keeps on). Per-epoch logs go to
    ``train_state.history``; ``train_state.progress`` holds ``epoch`` and, with early
    stopping, ``best`` (the best monitored value), ``best_epoch`` and, when it stopped early,
    ``stopped_epoch`` (epochs count from 1). A training saved mid-way (from
    :meth:`on_epoch_end`) resumes from its last epoch and ends as the uninterrupted one would.
    """

    dry_framework: ClassVar[str] = "tf"

    def __init__(self, model: Any, optimizer: Optimizer | None = None,
                 loss: Loss | None = None, spec: TrainSpec | None = None,
                 task: str = "classifier",
                 metrics: Sequence[str | Metric] | None = None,
                 procedure: KerasProcedure | None = None) -> None:
        if task not in TASKS:
            raise ConfigurationError(f"task must be 'classifier' or 'regressor', got {task!r}")
        if procedure is not None and not isinstance(procedure, KerasProcedure):
            raise ConfigurationError(
                f"procedure must be a KerasProcedure (e.g. MixupProcedure(0.2) or a subclass "
                f"of KerasProcedure), got {type(procedure).__qualname__}")
        if not isinstance(model, (Object, ObjectDef)):
            raise ConfigurationError(
                f"model must be a dryml Object (e.g. Sequential) or ObjectDef, got "
                f"{type(model).__qualname__}")
        if metrics is None:
            metrics = ("accuracy",) if task == "classifier" else ("mae",)
        if isinstance(metrics, str) or not all(isinstance(m, (str, Metric)) for m in metrics):
            raise ConfigurationError(
                f"metrics must be a list of metric names or Metric components, got {metrics!r}")
        self.model = model
        self.optimizer = optimizer if optimizer is not None else Optimizer(
            "Adam", learning_rate=1e-3)
        self.loss = loss if loss is not None else _default_loss(task)
        self.spec = spec if spec is not None else TrainSpec()
        self.task = task  # type: ignore[misc]
        self.metrics = tuple(metrics)
        self.procedure = procedure if procedure is not None else KerasProcedure()
        self._keras_model: Any = None
        self._best_weights: Any = None
        # State loaded from a file, still encoded: decoded (TensorFlow imported) on first use,
        # so a process that only holds, saves or forwards the model never imports TensorFlow.
        self._stored: dict[str, StoredValue] = {}

    @property
    def keras_model(self) -> keras.Model | None:
        """The trained Keras model (None before training; in the process that holds it)."""
        return self._keras

    @property
    def _keras(self) -> Any:
        if self._keras_model is None and self._stored:
            self._restore()
        return self._keras_model

    @_keras.setter
    def _keras(self, value: Any) -> None:
        self._keras_model = value

    def _restore(self) -> None:
        """Decode the stored model (and what a resumable training needs)."""
        loaded = {name: value.load() for name, value in self._stored.items()}
        model = loaded.get("model")
        if model is not None:
            import keras

            if not isinstance(model, keras.Model):  # a plain value a file put in its place
                # raised again on the next use: the stored state stays
                raise FormatError(f"the stored 'model' of this KerasTrainable is a "
                                  f"{type(model).__name__}, not a Keras model: the file was "
                                  "altered")
        self._stored = {}
        self._keras_model = model
        if self._keras_model is not None and ("rng" in loaded or "best_weights" in loaded):
            from dryml_tf._models_fit import load_training

            load_training(self, loaded)  # type: ignore[arg-type]  # a dict reads as a store

    def save_object_imp(self, store: SaveStore) -> None:
        if self._keras_model is None:  # never used here: the loaded state goes back as read
            for name, value in self._stored.items():
                store.put(name, value)
            return
        # weights, compile config and optimizer state (dryml-tf's Keras serializer)
        store.put("model", self._keras)
        if self.train_state.status == "training":
            from dryml_tf._models_fit import save_training

            save_training(self, store)

    def load_object_imp(self, store: LoadStore) -> None:
        self._keras_model, self._best_weights = None, None
        self._stored = {name: store.get_deferred(name) for name in store.names()
                        if name in ("model", "rng", "best_weights")}

    def fit(self, data: Dataset, valid: Dataset | None) -> None:
        from dryml_tf._models_fit import run_fit

        run_fit(self, data, valid)

    def on_epoch_end(self, logs: dict[str, float]) -> None:
        """Called after each epoch with its logs (epoch, loss, validation metrics); override to
        log or to checkpoint, e.g. ``save_object(self, path)``: a file saved here resumes from
        this epoch when loaded and trained again, and ends as the uninterrupted training
        would."""

    def predict(self, x: Any) -> Any:
        """Class probabilities ``(n, classes)`` (classifier) or values (regressor: ``(n,)`` for
        one output) for a numpy batch."""
        from dryml_tf._models_fit import predict

        if self._keras is None:
            raise ConfigurationError("KerasTrainable.predict before training")
        return predict(self, x)
