"""``TrainingProcedure``: the loop that trains a model, as a component of its definition."""

from __future__ import annotations

import math
import numbers

from dryml._object import Object
from dryml.errors import ConfigurationError

__all__ = ["TrainingProcedure", "positive_number"]


def positive_number(owner: str, name: str, value: object, example: str) -> float:
    """``value`` as a float when it is a finite real number > 0; else a ConfigurationError
    naming ``owner``'s argument ``name`` and an ``example`` of a good value."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value <= 0):
        raise ConfigurationError(f"{owner} {name} must be a number > 0 (e.g. {example}), "
                                 f"got {value!r}")
    return float(value)


def whole_number(owner: str, name: str, value: object, least: int = 1) -> int:
    """``value`` as an int when it is a whole number >= ``least`` (not a bool); else a
    ConfigurationError naming ``owner``'s argument ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ConfigurationError(f"{owner} {name} must be a whole number >= {least}, "
                                 f"got {value!r}")
    return int(value)


class TrainingProcedure(Object):
    """Base of every backend's training procedures: *how* a Trainable trains.

    A procedure is a component like the optimizer or the loss: passed to a Trainable as
    ``procedure=``, it is part of the definition, saved in the ``.dry`` file, shown by
    ``ObjectDef``, matched by a ``Selector`` and searched over with ``Choice``. Each backend
    subclasses it with the hooks its loop calls (``dryml_torch.models.TorchProcedure``:
    ``train_epoch`` / ``train_step``; ``dryml_tf.models.KerasProcedure``: ``train_step`` /
    ``build_optimizer``); the backend keeps the outer loop (validation, early stopping,
    history, progress, resume, per-epoch seeds), so every procedure gets them.

    Keep constructor arguments plain values (``alpha``, ``steps``) and import the framework
    inside the hooks, so a definition builds without the framework.

    >>> from dryml.repo import Selector
    >>> class Plain(TrainingProcedure):
    ...     def __init__(self, steps: int = 1):
    ...         self.steps = steps
    >>> Selector(TrainingProcedure, kwargs={"steps": 2})(Plain(steps=2))
    True
    """
