"""``Pipe``: trainables chained across frameworks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dryml.errors import ConfigurationError
from dryml.models._trainable import Trainable

if TYPE_CHECKING:
    from dryml.data import Dataset

__all__ = ["Pipe"]


class Pipe(Trainable):
    """Steps applied in order; each is trained on the previous steps' output.

    >>> from dryml.models import Pipe
    >>> # Pipe(StandardScaler step, torch network step)  # doctest: +SKIP

    Training walks the steps: a step that is already trained is skipped (so an interrupted
    training resumes after the last finished step), the others are trained on the output of
    the steps before them, each in its own framework's context. ``eval`` chains the steps'
    ``eval``. The task (classifier/regressor) is the last step's.
    """

    def __init__(self, *steps: Trainable) -> None:
        if not steps or not all(isinstance(s, Trainable) for s in steps):
            raise ConfigurationError("Pipe needs one or more Trainables as its steps")
        self.steps = steps

    @property
    def task(self) -> str:  # type: ignore[override]
        return self.steps[-1].task

    @property
    def trained(self) -> bool:
        return all(step.trained for step in self.steps)

    def train(self, data: Dataset, valid: Dataset | None = None, *,
              context_reqs: dict[str, Any] | None = None) -> None:
        self.train_state.status = "training"
        for i, step in enumerate(self.steps):
            step.train(data, valid)
            self.train_state.progress["steps_done"] = i + 1
            if i + 1 < len(self.steps):
                data = step.eval(data)
                valid = step.eval(valid) if valid is not None else None
        self.train_state.status = "trained"

    def eval(self, data: Dataset, *, context_reqs: dict[str, Any] | None = None) -> Dataset:
        for step in self.steps:
            data = step.eval(data)
        return data

    def predict(self, x: Any) -> Any:
        for step in self.steps:
            x = step.predict(x)
        return x
