"""Helpers of :mod:`dryml_xgboost.models` (imports XGBoost: used only while training)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import xgboost
from tqdm.auto import tqdm  # type: ignore[import-untyped, unused-ignore]

__all__ = ["ProgressBar", "history_of"]

def _last(log: dict[str, Any], data_name: str) -> dict[str, float]:
    return {name: float(values[-1]) for name, values in log.get(data_name, {}).items() if values}


class ProgressBar(xgboost.callback.TrainingCallback):
    """A tqdm bar over boosting rounds (to stderr): round, training loss, validation metric."""

    def __init__(self, total: int, desc: str,
                 on_round: Callable[[dict[str, float]], None] | None = None) -> None:
        super().__init__()
        self.total, self.desc, self.on_round = total, desc, on_round
        self.bar: Any = None

    def before_training(self, model: Any) -> Any:
        """Open the bar."""
        self.bar = tqdm(total=self.total, desc=self.desc, unit="round", file=sys.stderr,
                        dynamic_ncols=True)
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        """Advance one round; show the latest metrics. Never asks to stop."""
        logs: dict[str, float] = {}
        for data_name, prefix in (("validation_0", ""), ("validation_1", "val_")):
            for name, value in _last(evals_log, data_name).items():
                logs[prefix + name] = float(value)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
            self.bar.update(1)
        if self.on_round is not None:  # e.g. a search's pruner, through on_epoch_end
            self.on_round({"round": epoch + 1, **logs})
        return False

    def after_training(self, model: Any) -> Any:
        """Close the bar (early stopping may leave it short of its total)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        return model


def history_of(evals_result: dict[str, dict[str, list[float]]]) -> list[dict[str, float]]:
    """One dict per boosting round: every metric by name (``val_`` for validation), and
    ``loss`` / ``val_loss``: the last metric of each, the one XGBoost's early stopping watches."""
    rows: list[dict[str, float]] = []
    for data_name, prefix in (("validation_0", ""), ("validation_1", "val_")):
        metrics = evals_result.get(data_name, {})
        last = len(metrics) - 1
        for k, (name, values) in enumerate(metrics.items()):
            for i, value in enumerate(values):
                while len(rows) <= i:
                    rows.append({"round": float(len(rows) + 1)})
                rows[i][prefix + name] = float(value)
                if k == last:
                    rows[i][prefix + "loss"] = float(value)
    return rows
