"""Models from reusable components: Trainables, training procedures and Pipes.

A :class:`Trainable` is an Object whose parts (the network or estimator, the training
procedure, the optimizer, the loss) are constructor arguments, so each is part of its
definition and can be swapped, selected with a Selector and searched over. Backends provide
the framework Trainables (``dryml_sklearn.models``, ``dryml_xgboost.models``,
``dryml_torch.models``, ``dryml_tf.models``); this package holds what they share.
"""

from __future__ import annotations

from dryml.models._arrays import split_validation, supervised_arrays
from dryml.models._pipe import Pipe
from dryml.models._procedure import TrainingProcedure
from dryml.models._spec import EarlyStopping, TrainSpec
from dryml.models._trainable import (
    INTERRUPTED,
    Trainable,
    TrainState,
    predictions_like,
    starts_over,
)

__all__ = [
    "INTERRUPTED",
    "EarlyStopping",
    "Pipe",
    "TrainSpec",
    "TrainState",
    "Trainable",
    "TrainingProcedure",
    "predictions_like",
    "split_validation",
    "starts_over",
    "supervised_arrays",
]
