"""XGBoost models from components: :class:`XGBoostTrainable`.

``XGBoostTrainable(task, spec, **xgb_params)`` trains an ``xgboost.XGBClassifier`` or
``XGBRegressor`` (XGBoost's scikit-learn interface, built from ``xgb_params``) inside an
``xgboost`` compute context, with a progress bar over boosting rounds and early stopping on
validation data. The training procedure is a :class:`dryml.models.TrainSpec`, the same one other
frameworks read:

>>> from dryml.models import EarlyStopping, TrainSpec
>>> from dryml_xgboost.models import XGBoostTrainable
>>> spec = TrainSpec(validation_split=0.2, early_stopping=EarlyStopping(patience=10), seed=3)
>>> model = XGBoostTrainable("classifier", spec, n_estimators=500, max_depth=4)
>>> model.xgb_params
{'n_estimators': 500, 'max_depth': 4}

XGBoost is imported only when the model trains (in the worker that trains it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dryml.errors import BackendUnavailableError, ConfigurationError, NotTrainedError
from dryml.format import Deferred
from dryml.models import Trainable, TrainSpec, split_validation, supervised_arrays

if TYPE_CHECKING:
    from dryml.data import Dataset
    from dryml.format import LoadStore, SaveStore

__all__ = ["XGBoostTrainable"]

TASKS = ("classifier", "regressor")
#: Set from the TrainSpec and by the trainable itself, never through ``xgb_params``.
_RESERVED = {"early_stopping_rounds": "spec=TrainSpec(early_stopping=EarlyStopping(patience=N))",
             "callbacks": "nothing (the trainable adds its progress bar and early stopping)"}


#: The objectives whose ``predict_proba`` gives class probabilities.
_PROBABILITIES = ("binary:logistic", "multi:softprob", "multi:softmax")


def _is_xgboost_model(value: Any) -> bool:
    import xgboost

    return isinstance(value, (xgboost.XGBModel, xgboost.Booster))


def _fit(model: Any, x: Any, y: Any, eval_set: list[Any], params: dict[str, Any],
         stopping: Any, metric: str | None) -> None:
    """``model.fit``, an unknown metric name said in dryml's words."""
    import xgboost

    try:
        model.fit(x, y, eval_set=eval_set, verbose=False)
    except xgboost.core.XGBoostError as exc:
        if "Unknown metric function" not in str(exc):
            raise
        wanted = params.get("eval_metric")
        raise ConfigurationError(
            f"XGBoost has no metric among eval_metric={wanted!r}"
            + (f" (early stopping's monitor={stopping.monitor!r} added {metric!r})"
               if stopping is not None and metric is not None else "")
            + ": use XGBoost's names (logloss, mlogloss, error, merror, auc, aucpr, rmse, "
            "mae, ...), or monitor='val_accuracy' for accuracy") from None


class XGBoostTrainable(Trainable):
    """An ``XGBClassifier`` / ``XGBRegressor`` trained with early stopping.

    ``xgb_params`` are the scikit-learn wrapper's parameters (``n_estimators`` is the most
    boosting rounds, default 100; ``learning_rate``, ``max_depth``...). From ``spec`` (default
    ``TrainSpec()``): the seed (``train_seed``) becomes ``random_state`` unless given;
    ``validation_split`` holds out that fraction of the training data (chosen with
    ``spec.split_seed``) when no validation Dataset is passed to ``train``;
    ``early_stopping`` stops after ``patience`` rounds without improvement of the validation
    metric (``monitor="val_loss"``: the last of ``eval_metric``,
    else the objective's default; ``"val_<name>"``: XGBoost metric ``<name>``, e.g.
    ``"val_auc"`` with ``mode="max"``), and prediction then uses the best round only.
    Epochs, batch size and shuffling do not apply to boosting.

    Eval gives class probabilities ``(n, classes)`` for classifiers (labels must be
    0..classes-1) and values ``(n,)`` for regressors. Per-round metrics are in
    ``train_state.history`` (``loss``, ``val_loss`` and each metric by name).
    """

    dry_framework = "xgboost"
    #: The fitted model. Loaded from a file it stays encoded until first used, so a process
    #: that only holds, saves or forwards the trainable never imports the framework.
    model = Deferred(_is_xgboost_model, "an XGBoost model")

    def __init__(self, task: str = "classifier", spec: TrainSpec | None = None,
                 **xgb_params: Any) -> None:
        if task not in TASKS:
            raise ConfigurationError(f"task must be 'classifier' or 'regressor', got {task!r}")
        if spec is not None and not isinstance(spec, TrainSpec):
            raise ConfigurationError(f"spec must be a TrainSpec or None, got {spec!r}")
        for name, instead in _RESERVED.items():
            if name in xgb_params:
                raise ConfigurationError(f"XGBoostTrainable sets {name!r} itself; pass {instead}")
        objective = xgb_params.get("objective")
        if task == "classifier" and objective is not None and objective not in _PROBABILITIES:
            # otherwise binary:logitraw's margins would be scored as probabilities
            raise ConfigurationError(
                f"a classifier's objective must give class probabilities "
                f"({', '.join(_PROBABILITIES)}), got {objective!r}; leave it unset for the "
                "default")
        self.spec, self.xgb_params = spec, xgb_params
        self.task = task  # type: ignore[misc]  # per-instance value of Trainable.task
        self.model: Any = None

    def fit(self, data: Dataset, valid: Dataset | None) -> None:
        """Boost on ``data``; validate (and stop early) on ``valid`` or a split of ``data``."""
        try:
            import sklearn  # noqa: F401 - XGBClassifier / XGBRegressor fail without it
            import xgboost

            from dryml_xgboost import _models_util as util
        except ImportError as exc:  # XGBClassifier / XGBRegressor need scikit-learn
            raise BackendUnavailableError(
                f"XGBoostTrainable needs XGBoost's scikit-learn interface ({exc}): "
                "pip install 'dryml-xgboost[sklearn]'") from exc

        spec = self.spec if self.spec is not None else TrainSpec()
        x, y = supervised_arrays(data)
        x_valid = y_valid = None
        if valid is not None:
            x_valid, y_valid = supervised_arrays(valid, "validation")
        elif spec.validation_split > 0:
            (x, y), (x_valid, y_valid) = split_validation(x, y, spec.validation_split,
                                                          spec.split_seed)
        params = dict(self.xgb_params)
        classes = None
        if self.task == "classifier":
            classes = _check_classes(y, y_valid, params, valid is None)
        params.setdefault("random_state", self.train_seed)
        user_jobs = params.get("n_jobs")
        if user_jobs is None:
            params["n_jobs"] = _context_threads()
        rounds = int(params.get("n_estimators") or 100)
        bar = util.ProgressBar(rounds, self, on_round=self.on_epoch_end)
        callbacks: list[Any] = [bar]
        stopping, metric = spec.early_stopping, None
        if stopping is not None and x_valid is not None:
            metric = _monitored_metric(stopping.monitor, params, classes)
            # auto: XGBoost reads the direction from the metric it watches (val_loss stands
            # for the last eval_metric: with "auc" it was minimized, keeping the worst round);
            # accuracy is watched as XGBoost's error, 1 - accuracy, which goes down
            maximize = (False if metric in util.ERRORS
                        else None if stopping.auto and metric is None
                        else stopping.mode == "max")
            callbacks.append(util.EarlyStopping(
                rounds=stopping.rounds, metric_name=metric, maximize=maximize,
                min_delta=stopping.min_delta, save_best=False))
        cls = xgboost.XGBClassifier if self.task == "classifier" else xgboost.XGBRegressor
        model = cls(**params, callbacks=callbacks)
        eval_set = [(x, y)] if x_valid is None else [(x, y), (x_valid, y_valid)]
        try:
            _fit(model, x, y, eval_set, params, stopping, metric)
        except BaseException as exc:
            bar.failed(exc)  # XGBoost skips after_training when fit raises
            raise
        # callbacks are code (not saved); the thread count was this worker's. Set as
        # attributes: set_params on a fitted model pushes every parameter into the booster
        # again, and a list eval_metric arrived there as the string "['mlogloss', 'merror']",
        # after which saving the trained model failed (it was lost with the worker).
        model.callbacks, model.n_jobs = None, user_jobs
        if user_jobs is not None:
            model.get_booster().set_param("nthread", user_jobs)
        self.model = model
        # loss / val_loss: the metric early stopping watched, wherever it is in eval_metric
        history = util.history_of(model.evals_result(), metric)
        self.train_state.history = history
        self.train_state.progress = {"rounds": len(history)}
        best = _best_iteration(model)
        if best is not None:
            self.train_state.progress["best_iteration"] = best

    def on_epoch_end(self, logs: dict[str, float]) -> None:
        """Called after each boosting round with its ``logs`` (``round`` and the latest
        metrics, ``val_`` for validation); override to log. A search's pruner listens here."""

    def predict(self, x: Any) -> Any:
        """Class probabilities (classifier) or values (regressor) for a numpy batch; after
        early stopping only the rounds up to the best one are used."""
        if self.model is None:
            raise NotTrainedError("XGBoostTrainable.predict before training: call train() first")
        if self.task == "classifier":
            return self.model.predict_proba(x)
        return self.model.predict(x)

    @property
    def best_iteration(self) -> int | None:
        """The best boosting round (0-based) found by early stopping, else None."""
        return None if self.model is None else _best_iteration(self.model)

    def save_object_imp(self, store: SaveStore) -> None:
        XGBoostTrainable.model.save(self, store)  # a model loaded and never used is not decoded

    def load_object_imp(self, store: LoadStore) -> None:
        XGBoostTrainable.model.load(self, store)


def _context_threads() -> int | None:
    """The CPU threads the current compute context grants XGBoost (None outside one)."""
    from dryml.context import current_context

    ctx = current_context()
    return None if ctx is None else ctx.cpu_threads("xgboost")


def _check_classes(y: Any, y_valid: Any, params: dict[str, Any], split: bool) -> int:
    """The number of classes of a classifier's training labels, checked before XGBoost sees
    them (its own errors name neither the split nor the fix): validation labels the training
    rows lack are refused, and a ``multi:`` objective gets its ``num_class``."""
    import numpy as np

    found = np.unique(np.asarray(y))
    if y_valid is not None:
        extra = np.setdiff1d(np.unique(np.asarray(y_valid)), found)
        if extra.size:
            how = ("the validation split held out every row of them" if split
                   else "the validation Dataset holds them")
            raise ConfigurationError(
                f"the validation data holds the label(s) {extra[:5].tolist()} that the "
                f"training rows lack ({how}); XGBoost scores only the classes it trains on: "
                "hold out fewer rows, or pass validation data of the trained classes")
    count = len(found)
    if str(params.get("objective", "")).startswith("multi:"):
        params["num_class"] = count  # XGBClassifier sets it for more than two classes only
    elif count == 2 and params.get("num_class") not in (None, 1):
        raise ConfigurationError(
            f"num_class={params['num_class']!r} with two classes: XGBoost then boosts one "
            "score per row for the binary objective and one per class for num_class; leave "
            "num_class out, or use objective='multi:softprob'")
    return count


def _monitored_metric(monitor: str, params: dict[str, Any],
                      classes: int | None = None) -> str | None:
    """The XGBoost metric early stopping watches (None: XGBoost's default, the last one);
    a named metric is added to ``params['eval_metric']`` when missing. ``val_accuracy`` (the
    name other backends log) is XGBoost's ``error`` (``merror`` for more than two classes):
    1 - accuracy, which the history shows as ``val_accuracy`` too."""
    if monitor == "val_loss":
        return None
    if not monitor.startswith("val_"):  # "loss" watched the validation metric, unlike torch's
        raise ConfigurationError(
            f"XGBoost's early stopping watches the validation data, so monitor={monitor!r} "
            "(a training metric in Keras and torch) has no meaning here: monitor 'val_loss' "
            "or 'val_<xgboost metric>' (e.g. 'val_accuracy', 'val_auc')")
    name = monitor.removeprefix("val_")
    if name == "accuracy":
        if classes is None:
            raise ConfigurationError("early stopping on 'val_accuracy' is for classifiers; "
                                     "a regressor monitors e.g. 'val_rmse'")
        multi = classes > 2 or str(params.get("objective", "")).startswith("multi:")
        name = "merror" if multi else "error"
    current = params.get("eval_metric")
    if current is None:
        params["eval_metric"] = name
    elif isinstance(current, str):
        if current != name:
            params["eval_metric"] = [current, name]
    elif isinstance(current, (list, tuple)):
        if name not in current:
            params["eval_metric"] = [*current, name]
    else:
        raise ConfigurationError(
            f"early stopping on {monitor!r} needs eval_metric as a metric name or a list of "
            f"names, got {current!r}")
    return name


def _best_iteration(model: Any) -> int | None:
    try:
        return int(model.best_iteration)
    except AttributeError:
        return None
