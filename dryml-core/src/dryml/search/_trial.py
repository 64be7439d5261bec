"""One trial's work, run in a worker of the model's framework: train, then score."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dryml.context import compute_context
from dryml.errors import ConfigurationError, MetricError
from dryml.models._spec import higher_is_better

__all__ = ["MAXIMIZE", "MINIMIZE", "monitor_direction_of", "resolve_metrics", "train_and_score"]

MAXIMIZE = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "r2")
# with the names of dryml.metrics' functions (mean_squared_error.__name__), which a callable
# metric and a Repo entry scored by one are known by
MINIMIZE = ("log_loss", "mse", "mae", "mean_squared_error", "mean_absolute_error")

Metric = tuple[str, Callable[..., float]]


def resolve_metrics(metric: Any, direction: Any) -> tuple[list[Metric], list[str]]:
    """``([(name, fn)], [direction])`` from a metric (name or callable on (model, dataset)) or a
    list of them, and a direction ("maximize"/"minimize") or a list of them."""
    from dryml import metrics as dm

    items = list(metric) if isinstance(metric, (list, tuple)) else [metric]
    if not items:
        raise ConfigurationError("metric: give at least one metric")
    resolved: list[Metric] = []
    for item in items:
        if isinstance(item, str):
            if item not in dm.METRICS:
                raise MetricError(f"unknown metric {item!r}; the known ones are "
                                  f"{', '.join(sorted(dm.METRICS))}, or pass a callable "
                                  "metric(model, dataset) -> float")
            resolved.append((item, dm.METRICS[item]))
        elif callable(item):
            resolved.append((getattr(item, "__name__", "metric"), item))
        else:
            raise MetricError(f"a metric is a name or a callable, got {item!r}")
    if direction is None:
        directions = []
        for name, _ in resolved:
            if name not in MAXIMIZE + MINIMIZE:
                raise ConfigurationError(
                    f"metric {name!r}: say whether to maximize or minimize it (direction=...)")
            directions.append("maximize" if name in MAXIMIZE else "minimize")
    else:
        directions = list(direction) if isinstance(direction, (list, tuple)) else [direction]
    if len(directions) != len(resolved) or any(
            d not in ("maximize", "minimize") for d in directions):
        raise ConfigurationError(
            f"direction: one of 'maximize'/'minimize' per metric ({len(resolved)}), "
            f"got {direction!r}")
    names = [n for n, _ in resolved]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"metric names repeat: {names}")
    return resolved, directions


#: Epoch log names (after ``val_``) whose direction is known: the metrics' own, and the losses
#: and scores Keras, torch and XGBoost log.
_LOWER_IS_BETTER = frozenset(MINIMIZE) | {"loss", "logloss", "mlogloss", "error", "merror",
                                          "rmse", "mape", "rmsle", "mphe"}


def monitor_direction_of(monitor: str, given: str | None, metric: str, direction: str, *,
                         needed: bool) -> str:
    """Which way ``monitor`` improves: ``given``, else from its name (``val_<metric>`` goes
    the metric's ``direction``), else (``needed``: a pruner or scheduler ranks by it) an error
    that asks for it."""
    if given is not None:
        if given not in ("maximize", "minimize"):
            raise ConfigurationError(
                f"monitor_direction is 'maximize' or 'minimize', got {given!r}")
        return given
    base = monitor.removeprefix("val_")
    if base == metric:
        return direction
    if base in _LOWER_IS_BETTER:
        return "minimize"
    if base in MAXIMIZE or higher_is_better(base):
        return "maximize"
    if needed:
        raise ConfigurationError(
            f"say which way {monitor!r} improves: Search(..., monitor={monitor!r}, "
            "monitor_direction='minimize' or 'maximize'); the pruner stops the trials whose "
            "monitor is worst")
    return direction


def _score(model: Any, valid: Any, metrics: list[Metric]) -> dict[str, float]:
    return {name: float(fn(model, valid)) for name, fn in metrics}


def reporting_step(model: Any) -> Any:
    """The Trainable whose epochs a trial reports: the model, or the last step of a Pipe
    (nested ones too), where the network that trains by epochs sits (hooked on the Pipe, a
    pruner got none of its epochs)."""
    from dryml.models import Pipe

    while isinstance(model, Pipe):
        model = model.steps[-1]
    return model


def trial_validation(model: Any, valid: Any, watched: bool) -> Any:
    """The validation data a trial's ``model`` trains with (``Search`` and Ray Tune): the
    scored rows ``valid`` when a Trainable in it holds out a validation_split (it does not
    split them off again) or when its epochs are ``watched`` (a pruner or a Tune scheduler
    reads their ``val_`` logs, which a model trained without validation data has none of);
    otherwise None, and it trains on ``train`` alone (XGBoost refuses validation labels its
    training rows lack)."""
    return valid if watched or wants_validation(model) else None


def wants_validation(model: Any) -> bool:
    """Whether a Trainable in ``model`` (a Pipe's steps too) holds out a validation_split:
    it is given the scored rows as its validation data instead of splitting them off again."""
    from dryml.context._lifecycle import iter_objects
    from dryml.models import Trainable

    # a transformer step's split is unused (scikit-learn transformers fit on all the rows)
    return any(isinstance(o, Trainable) and getattr(o, "task", None) != "transformer"
               and (getattr(getattr(o, "spec", None), "validation_split", 0) or 0) > 0
               for o in iter_objects([model]))


class _EpochHook:
    """Reports every epoch a Trainable's ``on_epoch_end`` sees (torch, Keras) while active
    (a Pipe's: its last step's)."""

    def __init__(self, model: Any) -> None:
        self.model = reporting_step(model)
        #: the last epoch's logs (XGBoost fills its history only once boosting ends)
        self.last: dict[str, float] = {}

    def __enter__(self) -> None:
        from dryml.search._report import report_epoch

        original = getattr(self.model, "on_epoch_end", None)
        if original is None:
            return
        count = [0]

        def on_epoch_end(logs: dict[str, float]) -> None:
            original(logs)
            self.last = dict(logs)
            count[0] += 1
            report_epoch(int(logs.get("epoch", logs.get("round", count[0]))), logs)

        self.model.__dict__["on_epoch_end"] = on_epoch_end

    def __exit__(self, *exc: Any) -> None:
        self.model.__dict__.pop("on_epoch_end", None)


REPORTER_FACTORY = "dryml.search._trial:make_reporter"
"""Where a relay on the driver's machine finds :func:`make_reporter`."""


def make_reporter(report: dict[str, Any]) -> Any:
    """The reporter of one trial: its epochs go to the pruner's study (``report["optuna"]``,
    files beside the Repo) and it says whether the trial should stop."""
    from dryml.search._optuna import worker_reporter

    return worker_reporter(report["optuna"], report["monitor"], bool(report.get("negate")))


def _train_and_score(model: Any, train: Any, valid: Any, metrics: list[Metric],
                     folds: list[tuple[Any, Any]] | None,
                     report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Runs in the worker: train (on each fold, when folds are given) and score. With
    ``report`` (a pruner's study), each epoch is reported and a pruned trial returns early."""
    from dryml.search._report import TrialPruned, reporting

    start = time.perf_counter()
    started = time.time()
    reporter = None
    if report is not None:
        args = {k: v for k, v in report.items() if k != "relay"}
        if "relay" in report:  # on a cluster: through the relay on the driver's machine
            from dryml.context._ray_relay import relay_reporter

            reporter = relay_reporter(report["relay"], REPORTER_FACTORY, args)
        else:
            reporter = make_reporter(args)
    reported = 0
    active = reporter
    if reporter is not None:
        inner = reporter

        def counted(step: int, logs: dict[str, float]) -> bool:
            nonlocal reported
            reported += 1
            return bool(inner(step, logs))

        active = counted
    hook = _EpochHook(model)
    try:
        with reporting(active), hook:
            out = _run(model, train, valid, metrics, folds, start, watched=reporter is not None)
    except TrialPruned:
        history = model.train_state.history
        last = {k: float(v) for k, v in (history[-1] if history else hook.last).items()}
        out = {"pruned": True, "metrics": last, "seconds": time.perf_counter() - start}
    # how many epochs reached the pruner (a Trainable that reports none cannot be pruned)
    return {**out, "started": started, "finished": time.time(),
            **({"reported": reported} if reporter is not None else {})}


def _run(model: Any, train: Any, valid: Any, metrics: list[Metric],
         folds: list[tuple[Any, Any]] | None, start: float, watched: bool
         ) -> dict[str, Any]:
    if folds:
        scores: list[dict[str, float]] = []
        definition = model.definition()
        for i, (fold_train, fold_valid) in enumerate(folds):
            # an id of its own, derived from the trial model's (a seeded search's fold models
            # train the same in every run)
            fold = definition.copy()
            fold.kwargs["dry_id"] = f"{model.dry_id}-fold{i}"
            fold_model = fold.build()
            fold_model.train(fold_train)
            scores.append(_score(fold_model, fold_valid, metrics))
        result = {name: sum(s[name] for s in scores) / len(scores) for name, _ in metrics}
        # the kept model learns from all the training data, as scikit-learn's refit (it was
        # the last fold's model, which the folds' mean score does not describe)
        model.train(train)
    else:
        # trained on train alone, a model with a validation_split took it out again and
        # learned from (1 - f)^2 of the data, and one without logged no val_ epochs for the
        # pruner (every trial failed: "the pruner watches 'val_accuracy'")
        model.train(train, trial_validation(model, valid, watched))
        result = _score(model, valid, metrics)
    return {"metrics": result, "seconds": time.perf_counter() - start}


#: the same function run in a warm worker for the model's framework; the trained state comes
#: back into the caller's model
train_and_score = compute_context(update_objs=True)(_train_and_score)
