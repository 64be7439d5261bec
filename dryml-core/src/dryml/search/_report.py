"""Per-epoch reports from a training loop to the search that runs it (pruning).

A Trainable that trains by epochs or rounds calls :func:`report_epoch` after each one. Outside
a search it does nothing. Inside a trial whose search has a pruner, it hands the epoch's
monitored value to the pruner and raises :class:`TrialPruned` when the pruner stops the trial;
the search records the trial as pruned with its last metrics.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from dryml.errors import ConfigurationError, DrymlError

__all__ = ["MonitorMissingError", "TrialPruned", "active_reporter", "report_epoch", "reporting"]

_state = threading.local()

#: ``reporter(step, logs) -> bool``: True when the trial should stop
Reporter = Callable[[int, dict[str, float]], bool]


class TrialPruned(DrymlError):  # noqa: N818 - the name Optuna users know
    """A search's pruner stopped this trial early (not an error: the trial is 'pruned')."""

    #: what a model's progress line ends with (not "failed: TrialPruned")
    progress_summary = "pruned"


class MonitorMissingError(ConfigurationError):
    """The pruner's ``monitor`` is not in the epochs' logs: every trial would fail alike, so
    the search stops at the first."""


def active_reporter() -> Reporter | None:
    """The reporter of the trial running in this thread, or None."""
    return getattr(_state, "reporter", None)


class reporting:  # noqa: N801 - used as a context manager
    """Install ``reporter`` for the trial that runs inside the ``with`` block."""

    def __init__(self, reporter: Reporter | None) -> None:
        self.reporter = reporter

    def __enter__(self) -> None:
        self.previous = active_reporter()
        _state.reporter = self.reporter

    def __exit__(self, *exc: Any) -> None:
        _state.reporter = self.previous


def report_epoch(step: int, logs: dict[str, float]) -> None:
    """Report one epoch's metrics (``{"val_loss": ..., "val_accuracy": ...}``) to the search
    running this training, if any; raises :class:`TrialPruned` when it should stop.

    Backends call it after each epoch (torch, Keras) or boosting round (XGBoost)."""
    reporter = active_reporter()
    if reporter is not None and reporter(step, logs):
        raise TrialPruned(f"pruned at step {step}")
