"""Helpers of :mod:`dryml_xgboost.models` (imports XGBoost: used only while training)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import xgboost

from dryml import progress

__all__ = ["ProgressBar", "history_of"]


#: XGBoost's classification errors, whose complement the logs show as ``accuracy`` too (the
#: name the other backends log, and a TrainSpec shared with them monitors)
ERRORS = ("error", "merror")


def _with_accuracy(logs: dict[str, float], prefix: str) -> dict[str, float]:
    """``logs`` and, where an error of :data:`ERRORS` is in them, ``accuracy`` = 1 - error."""
    for name in ERRORS:
        if prefix + name in logs and prefix + "accuracy" not in logs:
            logs[prefix + "accuracy"] = 1.0 - logs[prefix + name]
    return logs


def _last(log: dict[str, Any], data_name: str) -> dict[str, float]:
    return {name: float(values[-1]) for name, values in log.get(data_name, {}).items() if values}


class ProgressBar(xgboost.callback.TrainingCallback):
    """The model's line on the caller's progress display (:mod:`dryml.progress`): round,
    training and validation metrics; says when early stopping ended training.

    ``model`` is the trainable (its label, see :func:`dryml.progress.label_of`) or a label.
    """

    def __init__(self, total: int, model: Any,
                 on_round: Callable[[dict[str, float]], None] | None = None) -> None:
        super().__init__()
        self.total, self.on_round = total, on_round
        self.label = model if isinstance(model, str) else progress.label_of(model)
        spec = None if isinstance(model, str) else getattr(model, "spec", None)
        stopping = getattr(spec, "early_stopping", None)
        self.monitor = getattr(stopping, "monitor", None)
        self.track: progress.Track | None = None
        self.done = 0

    def before_training(self, model: Any) -> Any:
        """Open the track."""
        self.track = progress.track(self.label, framework="xgboost", total=self.total,
                                    unit="round")
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        """Advance one round; show the latest metrics. Never asks to stop."""
        logs: dict[str, float] = {}
        for data_name, prefix in (("validation_0", ""), ("validation_1", "val_")):
            for name, value in _last(evals_log, data_name).items():
                logs[prefix + name] = float(value)
            _with_accuracy(logs, prefix)
        self.done = epoch + 1
        if self.track is not None:
            self.track.update(self.done, logs)
        if self.on_round is not None:  # e.g. a search's pruner, through on_epoch_end
            self.on_round({"round": epoch + 1, **logs})
        return False

    def after_training(self, model: Any) -> Any:
        """Say so if early stopping ended training; close the track."""
        if self.track is not None:
            best = model.attr("best_iteration") if hasattr(model, "attr") else None
            if best is not None and self.done < self.total:
                score = model.attr("best_score")
                value = None if score is None else float(score)
                if value is not None and (self.monitor or "").removeprefix("val_") == "accuracy":
                    value = 1.0 - value  # watched as XGBoost's error
                nan = value is not None and value != value  # NaN in every round: no best
                self.track.status(progress.early_stopping_message(
                    "round", self.done, self.monitor or "val_loss", value,
                    None if nan else int(best) + 1))
            self.track.close()
            self.track = None
        return model

    def failed(self, exc: BaseException) -> None:
        """Close the track saying how training ended (``failed: Name``, or ``pruned``): the
        line said "ended" at the last round, as if training had stopped there on its own."""
        if self.track is not None:
            self.track.close(progress.ended_by(type(exc)))
            self.track = None


class EarlyStopping(xgboost.callback.EarlyStopping):  # type: ignore[misc]
    """XGBoost's early stopping, where a round whose score is NaN is no improvement and any
    number improves on a NaN best, as dryml's :class:`~dryml.models.EarlyStopping` says
    (XGBoost took a first round's NaN for the best and never improved on it: it stopped after
    ``rounds`` and predicted with round 0)."""

    def _update_rounds(self, *args: Any, **kwargs: Any) -> Any:
        # XGBoost's own hook (3.x: keywords score, name, metric, model, epoch); called in
        # another way, by another release, it is left as XGBoost has it
        score, name, metric = kwargs.get("score"), kwargs.get("name"), kwargs.get("metric")
        scores = getattr(self, "best_scores", None)
        if score is not None and isinstance(scores, dict):
            best = (scores.get(name) or {}).get(metric)
            if best and _nan(best[-1]) and not _nan(score):
                # as XGBoost's own first round: this one is the best (patience starts over)
                self.stopping_history.clear()
                scores.clear()
        return super()._update_rounds(*args, **kwargs)

    def after_training(self, model: Any) -> Any:
        """A score NaN in every round left round 0 as the best, and predictions used it
        alone: no round is best then, and every round predicts (as torch keeps its last
        epoch's weights)."""
        model = super().after_training(model)
        score = model.attr("best_score") if hasattr(model, "attr") else None
        if score is not None and _nan(float(score)):
            model.set_attr(best_score=None, best_iteration=None)
        return model


def _nan(score: Any) -> bool:
    """Whether an XGBoost score (a number, or a cross-validation (mean, std)) is NaN."""
    value = float(score[0] if isinstance(score, tuple) else score)
    return value != value


def history_of(evals_result: dict[str, dict[str, list[float]]],
               watched: str | None = None) -> list[dict[str, float]]:
    """One dict per boosting round: every metric by name (``val_`` for validation), and
    ``loss`` / ``val_loss``: the metric early stopping watches, ``watched`` when it names one
    of them, else the last (XGBoost's own choice)."""
    rows: list[dict[str, float]] = []
    for data_name, prefix in (("validation_0", ""), ("validation_1", "val_")):
        metrics = evals_result.get(data_name, {})
        loss = watched if watched in metrics else next(reversed(metrics), None)
        for name, values in metrics.items():
            for i, value in enumerate(values):
                while len(rows) <= i:
                    rows.append({"round": float(len(rows) + 1)})
                rows[i][prefix + name] = float(value)
                if name == loss:
                    rows[i][prefix + "loss"] = float(value)
        for row in rows:
            _with_accuracy(row, prefix)
    return rows
