"""Running a Trainable's train/eval in a worker of its framework (see ``dryml.context``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dryml.context import compute_context

if TYPE_CHECKING:
    from dryml.data import Dataset
    from dryml.models._trainable import Trainable

__all__ = ["remote_eval", "remote_train"]


def _portable(data: Dataset | None) -> Dataset | None:
    """Datasets cross to the worker as numpy arrays read here (``in_memory``): a framework
    pipeline cannot be pickled, and the worker of another framework must not import it."""
    return None if data is None else data.in_memory()


def _train_here(trainable: Trainable, data: Dataset, valid: Dataset | None) -> None:
    trainable.train(data, valid)


def _eval_here(trainable: Trainable, data: Dataset) -> Dataset:
    return trainable.eval(data)


_train_in_worker = compute_context(update_objs=True)(_train_here)
_eval_in_worker = compute_context()(_eval_here)


def _reqs(trainable: Trainable, reqs: dict[str, Any] | None) -> dict[str, Any]:
    return reqs if reqs is not None else {type(trainable).dry_framework: {}}


def remote_train(trainable: Trainable, data: Dataset, valid: Dataset | None,
                 reqs: dict[str, Any] | None = None) -> None:
    """Train in a worker for the trainable's framework; its new state comes back in place."""
    _train_in_worker(trainable, _portable(data), _portable(valid),
                     call_context_reqs=_reqs(trainable, reqs))


def remote_eval(trainable: Trainable, data: Dataset, reqs: dict[str, Any] | None = None) -> Any:
    """Evaluate in a worker for the trainable's framework."""
    return _eval_in_worker(trainable, _portable(data), call_context_reqs=_reqs(trainable, reqs))
