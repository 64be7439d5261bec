"""Training procedures: reusable components that say *how* to train, for any framework."""

from __future__ import annotations

from dryml._object import Object
from dryml.errors import ConfigurationError

__all__ = ["EarlyStopping", "TrainSpec"]


class EarlyStopping(Object):
    """Stop when ``monitor`` (a validation metric, lower is better unless ``mode='max'``) has not
    improved by ``min_delta`` for ``patience`` epochs; the best weights are kept."""

    def __init__(self, patience: int = 5, monitor: str = "val_loss", min_delta: float = 0.0,
                 mode: str = "min") -> None:
        if mode not in ("min", "max"):
            raise ConfigurationError(f"EarlyStopping mode is 'min' or 'max', got {mode!r}")
        self.patience, self.monitor, self.min_delta, self.mode = patience, monitor, min_delta, mode

    def improved(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` by more than ``min_delta``."""
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta


class TrainSpec(Object):
    """A training procedure: epochs, batch size, validation split, early stopping, seed.

    One TrainSpec is reused across problems and frameworks: a torch training loop, Keras
    ``fit`` and XGBoost's boosting rounds all read it (a backend ignores what does not apply,
    e.g. ``batch_size`` for scikit-learn).

    >>> spec = TrainSpec(epochs=20, batch_size=64, validation_split=0.1,
    ...                  early_stopping=EarlyStopping(patience=3), seed=7)
    >>> spec.epochs, spec.early_stopping.patience
    (20, 3)
    """

    def __init__(self, epochs: int = 10, batch_size: int = 32, validation_split: float = 0.0,
                 early_stopping: EarlyStopping | None = None, seed: int = 0,
                 shuffle: bool = True) -> None:
        if epochs < 1 or batch_size < 1:
            raise ConfigurationError("epochs and batch_size must be at least 1")
        if not 0.0 <= validation_split < 1.0:
            raise ConfigurationError(f"validation_split must be in [0, 1), got {validation_split}")
        if early_stopping is not None and validation_split == 0.0:
            raise ConfigurationError(
                "early stopping needs validation data: set validation_split > 0")
        self.epochs, self.batch_size = epochs, batch_size
        self.validation_split, self.early_stopping = validation_split, early_stopping
        self.seed, self.shuffle = seed, shuffle
