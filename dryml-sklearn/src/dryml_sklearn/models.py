"""scikit-learn models from components: :class:`Estimator` and :class:`SklearnTrainable`.

An :class:`Estimator` names any scikit-learn estimator class by its dotted path, with its
parameters; nested Estimators (Pipeline steps, a meta-estimator's ``estimator=``) are
Estimators too, so the whole model is a plain-value definition that can be saved, selected
with a Selector and searched over. :class:`SklearnTrainable` trains it inside a ``sklearn``
compute context and evaluates it: class probabilities (``predict_proba``) for classifiers,
values (``predict``) for regressors, transformed inputs (``transform``) for transformers (a
step of a :class:`dryml.models.Pipe`, e.g. a scaler in front of a torch network).

>>> from dryml_sklearn.models import Estimator, SklearnTrainable
>>> pipe = Estimator("sklearn.pipeline.Pipeline", steps=[
...     ("scale", Estimator("sklearn.preprocessing.StandardScaler")),
...     ("clf", Estimator("sklearn.linear_model.LogisticRegression", max_iter=500))])
>>> model = SklearnTrainable(pipe, task="classifier")
>>> model.estimator.params["steps"][1][1].cls
'sklearn.linear_model.LogisticRegression'

scikit-learn is imported only when an estimator is built (in the worker that trains it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dryml import Object
from dryml.errors import ConfigurationError, NotTrainedError
from dryml.format import Deferred
from dryml.models import Trainable, TrainSpec

if TYPE_CHECKING:
    from dryml.data import Dataset
    from dryml.format import LoadStore, SaveStore

__all__ = ["Estimator", "SklearnTrainable"]

TASKS = ("classifier", "regressor", "transformer")


class Estimator(Object):
    """A scikit-learn estimator: its class as a dotted path, and its parameters.

    ``cls`` is e.g. ``"sklearn.ensemble.RandomForestClassifier"`` (``"module:Class"`` works
    too). Parameters are plain values or nested Estimators, in lists, tuples and dicts, e.g. a
    Pipeline's ``steps=[("scale", Estimator(...)), ("clf", Estimator(...))]``. The class must
    come from a module a dryml plugin trusts (scikit-learn's estimator families,
    ``xgboost.sklearn``) or from a module already imported where it is built.
    """

    def __init__(self, cls: str, /, **params: Any) -> None:
        if not isinstance(cls, str) or not cls:
            raise ConfigurationError(
                f"Estimator needs the estimator class as a dotted path string such as "
                f"'sklearn.linear_model.LogisticRegression', got {cls!r}")
        self.cls = cls
        self.params = params

    def build(self, seed: int | None = None) -> Any:
        """A new, unfitted scikit-learn estimator (nested Estimators built too).

        With ``seed``, every estimator built here that has a ``random_state`` parameter and
        was not given one gets ``random_state=seed``, so training is repeatable.
        """
        from dryml_sklearn._models_util import estimator_class

        cls = estimator_class(self.cls)
        params = {k: _build_value(v, seed) for k, v in self.params.items()}
        try:
            model = cls(**params)
        except TypeError as exc:
            raise ConfigurationError(f"{self.cls} does not take these parameters: {exc}"
                                     ) from None
        if seed is not None and "random_state" not in params and \
                "random_state" in model.get_params(deep=False):
            model.set_params(random_state=seed)
        return model


def _build_value(value: Any, seed: int | None) -> Any:
    """Build the Estimators inside a parameter value (lists, tuples, dicts walked)."""
    from dryml import ObjectDef

    if isinstance(value, ObjectDef) and issubclass(value.cls, Estimator):
        value = value.build()
    if isinstance(value, Estimator):
        return value.build(seed)
    if isinstance(value, list):
        return [_build_value(v, seed) for v in value]
    if isinstance(value, tuple):
        return tuple(_build_value(v, seed) for v in value)
    if isinstance(value, dict):
        return {k: _build_value(v, seed) for k, v in value.items()}
    return value


#: Integer labels from 0 up get a column each at their own place (column i holds label i)
#: while the largest is below this, or below twice the number of classes.
PADDED_WIDTH = 256


def _label_width(classes: Any) -> int | None:
    """The number of columns non-negative integer labels make (the largest plus one), or None
    for labels that keep scikit-learn's sorted order: strings, negative or float labels, and
    labels too far apart to pad (see :data:`PADDED_WIDTH`)."""
    labels = np.asarray(classes)
    if labels.dtype.kind not in "iu" or not labels.size or labels.min() < 0:
        return None
    width = int(labels.max()) + 1
    return width if width <= max(PADDED_WIDTH, 2 * labels.size) else None


def check_labels(y: Any) -> None:
    """ConfigurationError, before fitting, for labels of several columns (one-hot rows, or a
    multi-output problem), and for integer labels that would keep scikit-learn's
    sorted order (too far apart to pad) although some are below the number of classes: the
    metrics read those as column numbers, so they would be scored against the wrong
    columns."""
    values = np.asarray(y)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim == 2:
        # fitted, scikit-learn makes it a multi-output model whose predict_proba is a list
        # (one array per column), and eval failed with a bare AttributeError
        raise ConfigurationError(
            f"y has {values.shape[1]} columns, but a classifier's eval gives one row of class "
            "probabilities per example: pass one label per example (one-hot rows: "
            "data.apply_y(lambda y: np.argmax(y, axis=-1))); for several outputs, train one "
            "model per output column")
    if values.ndim != 1:
        return
    labels = np.unique(values)
    if (labels.dtype.kind in "iu" and labels.size and labels.min() >= 0
            and _label_width(labels) is None and labels.min() < labels.size):
        shown = ", ".join(str(v) for v in labels[:5]) + (", ..." if labels.size > 5 else "")
        raise ConfigurationError(
            f"class labels {shown} are too far apart for a probability column each (column i "
            f"holds label i up to {max(PADDED_WIDTH, 2 * labels.size) - 1}), and some are "
            "below the number of classes, which dryml.metrics reads as column numbers; "
            "number the classes 0..k-1 first: labels, y = np.unique(y, return_inverse=True)")


def _estimator_type(model: Any) -> str | None:
    """What scikit-learn's tags say ``model`` is ("classifier", "regressor", "clusterer",
    "density_estimator"...), or None when they say nothing (a class that only sets
    ``_estimator_type``, an older convention, is read by that)."""
    try:
        from sklearn.utils import get_tags

        kind = get_tags(model).estimator_type
    except Exception:  # noqa: BLE001 - an older scikit-learn, or tags a class got wrong
        kind = None
    return kind if kind is not None else getattr(model, "_estimator_type", None)


def _is_estimator(value: Any) -> bool:
    from sklearn.base import BaseEstimator

    return isinstance(value, BaseEstimator)


def class_columns(prob: Any, classes: Any) -> Any:
    """``predict_proba``'s columns placed at their integer labels: column i is label i, with a
    column of zeros for a label the training data lacked. scikit-learn leaves such a label out
    and orders the rest, which shifted every later column against the labels (digits without
    a 3 in training scored accuracy 0.33 instead of 0.90), and with labels 1..k put label 1 in
    column 0, while dryml's metrics read integer labels below the column count as column
    numbers (a perfect model scored accuracy 0.0 on a test split without the top label).
    Other labels (strings, negative numbers, integers too far apart: :func:`_label_width`)
    keep scikit-learn's sorted order."""
    width = None if classes is None else _label_width(classes)
    if width is None or width == prob.shape[1]:
        return prob
    out = np.zeros((len(prob), width), dtype=prob.dtype)
    out[:, np.asarray(classes)] = prob
    return out


class SklearnTrainable(Trainable):
    """Trains an :class:`Estimator` with one ``fit`` in a ``sklearn`` compute context.

    ``task`` is ``"classifier"`` (eval gives ``predict_proba``; for integer labels from 0 up,
    column i is label i, and a label the training data lacked gets a column of zeros; other
    labels, strings for one, keep scikit-learn's sorted order: see :func:`class_columns`),
    ``"regressor"`` (eval gives ``predict``) or ``"transformer"`` (eval gives ``transform``:
    the step of a :class:`~dryml.models.Pipe` that prepares the next step's inputs).

    ``spec`` (optional, a :class:`~dryml.models.TrainSpec`) gives the seed (default
    ``"auto"``: ``train_seed``, derived from this trainable's ``dry_id``; estimators with a
    ``random_state`` left unset get it) and a ``validation_split``: that
    fraction of the training data (chosen with ``spec.split_seed``) is held out when no validation
    Dataset is passed, and its scores go into the train state's history (a transformer fits
    on all the data). Epochs, batch size and early stopping do not apply to a single ``fit``.
    """

    dry_framework = "sklearn"
    #: The fitted model. Loaded from a file it stays encoded until first used, so a process
    #: that only holds, saves or forwards the trainable never imports the framework.
    model = Deferred(_is_estimator, "a fitted scikit-learn estimator")

    def __init__(self, estimator: Estimator, task: str = "classifier",
                 spec: TrainSpec | None = None) -> None:
        if not isinstance(estimator, Estimator):
            raise ConfigurationError(
                f"SklearnTrainable needs an Estimator(...) component, got {estimator!r}")
        if task not in TASKS:
            raise ConfigurationError(
                f"task must be 'classifier', 'regressor' or 'transformer', got {task!r}")
        self.estimator, self.spec = estimator, spec
        self.task = task  # type: ignore[misc]  # per-instance value of Trainable.task
        self.model: Any = None

    def fit(self, data: Dataset, valid: Dataset | None) -> None:
        """Build the estimator (seeded) and fit it on every example of ``data``."""
        from dryml import progress
        from dryml.models import split_validation, supervised_arrays
        from dryml_sklearn import _paths

        spec = self.spec if self.spec is not None else TrainSpec()
        x, y = supervised_arrays(data)
        x_valid = y_valid = None
        if valid is not None:
            x_valid, y_valid = supervised_arrays(valid, "validation")
        elif spec.validation_split > 0 and self.task != "transformer":
            (x, y), (x_valid, y_valid) = split_validation(x, y, spec.validation_split,
                                                          spec.split_seed)
        model = self.estimator.build(seed=self.train_seed)
        kind = _estimator_type(model)
        if self.task == "classifier" and kind not in (None, "classifier"):
            raise ConfigurationError(
                f"{self.estimator.cls} is a {kind}, not a classifier, so its predict_proba does "
                "not score the classes of y (a mixture model's are its clusters): use a "
                "classifier, or task='regressor' or 'transformer'")
        if self.task == "classifier" and not hasattr(model, "predict_proba"):
            raise ConfigurationError(
                f"{self.estimator.cls} has no predict_proba with these parameters, and a "
                "classifier's eval gives class probabilities: use e.g. SVC(probability=True), "
                "wrap it in sklearn.calibration.CalibratedClassifierCV, or use task='regressor'")
        if self.task == "classifier":
            check_labels(y)
        inside = _paths.nested_xgboost(model)
        if inside is not None:  # refused before fitting, not when the fitted model is saved
            raise ConfigurationError(f"{self.estimator.cls} holds an XGBoost estimator at "
                                     f"{inside}: {_paths.XGBOOST_INSTEAD}")
        if self.task == "transformer" and not hasattr(model, "transform"):
            raise ConfigurationError(
                f"{self.estimator.cls} has no transform(); task='transformer' is for "
                "preprocessing steps such as sklearn.preprocessing.StandardScaler")
        # one fit is one step: the model's line on the caller's display (dryml.progress)
        with progress.track(progress.label_of(self), framework="sklearn", total=1,
                            unit="fit") as bar:
            model.fit(x, y)
            self.model = model
            self.train_state.progress = {"fitted": True, "examples": len(x)}
            if x_valid is not None and y_valid is not None and self.task != "transformer":
                scores = self._scores(x_valid, y_valid)
                self.train_state.history = [scores] if scores else []
            bar.update(1, self.train_state.history[-1] if self.train_state.history else None)

    def _scores(self, x: Any, y: Any) -> dict[str, float]:
        """Validation scores, named like other backends' (``val_`` prefix); none, with a
        warning, when the validation labels cannot be scored (one the training rows lack):
        the fitted model is kept either way."""
        import warnings

        from dryml.errors import DrymlWarning, MetricError
        from dryml.metrics import arrays

        pred = self.predict(x)
        classes = getattr(self.model, "classes_", None)
        width = None if classes is None else _label_width(classes)
        # as class_columns puts them (no classes_: the columns are as the model gives them)
        labels = (None if classes is None else np.arange(width) if width is not None
                  else np.asarray(classes))
        try:
            if self.task != "classifier":  # NaN targets or predictions: a MetricError
                return {"val_loss": arrays.mean_squared_error(y, pred),
                        "val_r2": arrays.r2(y, pred)}
            return {"val_accuracy": arrays.accuracy(y, pred, labels=labels),
                    "val_loss": arrays.log_loss(y, pred, labels=labels)}
        except MetricError as exc:
            warnings.warn(f"{type(self).__name__} {self.dry_id!r} was trained, but its "
                          f"validation data cannot be scored: {exc}", DrymlWarning,
                          stacklevel=2)
            return {}

    def predict(self, x: Any) -> Any:
        """Class probabilities (classifier), values (regressor) or transformed inputs
        (transformer, as a dense array: a sparse output is made dense) for a numpy batch."""
        if self.model is None:
            raise NotTrainedError("SklearnTrainable.predict before training: call train() first")
        if self.task == "classifier":
            return class_columns(self.model.predict_proba(x), getattr(self.model, "classes_",
                                                                      None))
        if self.task == "transformer":
            out = self.model.transform(x)
            # a sparse matrix (OneHotEncoder's, KBinsDiscretizer's by default) is no array:
            # dryml's Datasets hold dense ones (it failed in numpy, "zero-dimensional arrays
            # cannot be concatenated")
            return out.toarray() if hasattr(out, "toarray") else out
        return self.model.predict(x)

    def save_object_imp(self, store: SaveStore) -> None:
        SklearnTrainable.model.save(self, store)  # a model loaded and never used is not decoded

    def load_object_imp(self, store: LoadStore) -> None:
        SklearnTrainable.model.load(self, store)
