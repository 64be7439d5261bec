"""Training procedures: reusable components that say *how* to train, for any framework."""

from __future__ import annotations

import hashlib
import math
import numbers
import re
from typing import Literal

from dryml._object import Object
from dryml.errors import ConfigurationError, warn

__all__ = ["AUTO_SEED", "EarlyStopping", "TrainSpec", "derived_seed"]

#: The default ``TrainSpec(seed=...)``: each trained object derives its own seed from its id.
AUTO_SEED: Literal["auto"] = "auto"
#: Seeds are below 2**32 (NumPy's legacy seeding and scikit-learn's ``random_state`` limit);
#: derived ones below 2**31, which every backend's seed parameter accepts.
SEED_LIMIT = 2**32


def derived_seed(dry_id: str) -> int:
    """The reproducible seed of the object with id ``dry_id`` (in ``[0, 2**31)``).

    A saved and reloaded object, or one rebuilt from its definition with the same id, gets
    the same seed; a new copy (a new id) gets another.

    >>> derived_seed("model-1") == derived_seed("model-1") != derived_seed("model-2")
    True
    """
    digest = hashlib.blake2b(dry_id.encode(), digest_size=8, person=b"dryml-seed").digest()
    return int.from_bytes(digest, "big") >> 33


#: Metric names (without ``val_``) for which higher is better; any other monitor is a loss or
#: an error, lower is better.
HIGHER_IS_BETTER = frozenset({"accuracy", "acc", "balanced_accuracy", "macro_f1", "f1",
                              "roc_auc", "auc", "aucpr", "r2", "map", "ndcg", "precision",
                              "recall", "binary_accuracy", "categorical_accuracy",
                              "sparse_categorical_accuracy"})


#: Words of metric names for which higher is better (Keras' f1_score, top_k_categorical_
#: accuracy, auc_1, mean_io_u; XGBoost's map@3, ndcg@5, pre@5).
_HIGHER_WORDS = frozenset({"accuracy", "acc", "auc", "aucpr", "f1", "r2", "precision",
                           "recall", "iou", "map", "ndcg", "pre", "fbeta", "similarity",
                           "correlation", "sensitivity", "specificity"})
# the last four: Keras' cosine_similarity, pearson_correlation, concordance_correlation,
# sensitivity_at_specificity and specificity_at_sensitivity metrics, all better higher


def higher_is_better(monitor: str) -> bool:
    """Whether a metric named ``monitor`` (``val_`` and an ``@n`` or ``_<n>`` suffix aside,
    any case) is better higher, as Keras' ``mode="auto"`` reads names; else it is a loss or
    an error, better lower."""
    name = monitor.lower().removeprefix("val_").split("@")[0]
    name = re.sub(r"_\d+$", "", name)
    words = set(name.split("_")) | {name.replace("_", "")}
    return (name in HIGHER_IS_BETTER or bool(words & _HIGHER_WORDS)
            or "iou" in name.replace("_", ""))  # mean_io_u


def _number(value: object) -> bool:
    """A number (numpy's too), not a bool, not NaN."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return not math.isnan(float(value))


class EarlyStopping(Object):
    """Stop when ``monitor`` (a validation metric) has not improved by ``min_delta`` for
    ``patience`` epochs; the best weights are kept. ``mode`` says which way is better:
    ``"auto"`` (the default) reads it from the name, as Keras does (``val_accuracy``,
    ``val_auc``, ``val_r2``... higher; losses and errors lower), else ``"min"`` or ``"max"``.
    ``patience=0`` stops at the first epoch without improvement, as 1 does (and as Keras
    does), in every backend. An epoch whose monitor is NaN is no improvement."""

    def __init__(self, patience: int = 5, monitor: str = "val_loss", min_delta: float = 0.0,
                 mode: str = "auto") -> None:
        if mode not in ("auto", "min", "max"):
            raise ConfigurationError(
                f"EarlyStopping mode is 'auto', 'min' or 'max', got {mode!r}")
        # each backend read a negative min_delta or a fractional patience its own way (torch
        # took a worse value as an improvement, Keras its absolute value, XGBoost raised;
        # patience 1.5 was 1 epoch in torch, 2 in Keras): every backend reads them as Keras
        # did, with a warning (a file saved with one still loads)
        if not _number(patience) or not 0 <= float(patience) < math.inf:
            raise ConfigurationError(
                f"EarlyStopping patience is a whole number of epochs >= 0, got {patience!r}")
        if not _number(min_delta):
            raise ConfigurationError(
                f"EarlyStopping min_delta is the least improvement that counts, a number >= 0 "
                f"whichever way the monitor improves (mode says that), got {min_delta!r}")
        if not float(patience).is_integer():
            warn(f"EarlyStopping patience={patience!r} is read as {math.ceil(patience)} "
                 "epochs, as Keras reads it; give a whole number")
        if min_delta < 0:
            warn(f"EarlyStopping min_delta={min_delta!r} is read as {abs(min_delta)!r}, the "
                 "least improvement that counts whichever way the monitor improves (mode "
                 "says that), as Keras reads it; give it >= 0")
        self.patience, self.monitor, self.min_delta = patience, monitor, abs(min_delta)
        #: whether the direction was read from the name (a backend that knows better which
        #: metric ``val_loss`` stands for, XGBoost's last ``eval_metric``, decides itself)
        self.auto = mode == "auto"
        # "auto" reads the direction from the monitor's name: a default of "min" whatever
        # the monitor kept the worst epoch's weights for monitor="val_accuracy"
        self.mode = mode if mode != "auto" else (
            "max" if higher_is_better(str(monitor)) else "min")

    @property
    def rounds(self) -> int:
        """Epochs without improvement that stop training: ``patience``, at least 1 (0 acts as
        1 in every backend, as in Keras; torch ran no epoch and XGBoost stopped after one)."""
        return max(math.ceil(self.patience), 1)

    def improved(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` by more than ``min_delta`` (never when it is NaN: a
        first NaN taken as the best froze early stopping on it)."""
        if value != value:
            return False
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta


class TrainSpec(Object):
    """A training procedure: epochs, batch size, validation split, early stopping, seed.

    ``seed="auto"`` (the default) gives each trained object its own reproducible randomness:
    the seed is derived from the trained object's ``dry_id`` (:func:`derived_seed`), so copies
    of one definition train differently while a saved, reloaded or rebuilt object (same id)
    trains the same. An int in ``[0, 2**32)`` is exactly that seed, for every object. Backends
    read the seed to use with :meth:`seed_for` (or :attr:`Trainable.train_seed`).

    One TrainSpec is reused across problems and frameworks: a torch training loop, Keras
    ``fit`` and XGBoost's boosting rounds all read it (a backend ignores what does not apply,
    e.g. ``batch_size`` for scikit-learn).

    >>> spec = TrainSpec(epochs=20, batch_size=64, validation_split=0.1,
    ...                  early_stopping=EarlyStopping(patience=3), seed=7)
    >>> spec.epochs, spec.early_stopping.patience
    (20, 3)
    >>> spec.seed_for(spec), TrainSpec().seed_for(spec) == derived_seed(spec.dry_id)
    (7, True)
    """

    def __init__(self, epochs: int = 10, batch_size: int = 32, validation_split: float = 0.0,
                 early_stopping: EarlyStopping | None = None,
                 seed: int | Literal["auto"] = AUTO_SEED, shuffle: bool = True) -> None:
        for name, value in (("epochs", epochs), ("batch_size", batch_size)):
            if not _is_int(value) or value < 1:
                raise ConfigurationError(
                    f"TrainSpec {name} must be a whole number >= 1, got {value!r}")
        if (isinstance(validation_split, bool) or not isinstance(validation_split, (int, float))
                or not math.isfinite(validation_split) or not 0.0 <= validation_split < 1.0):
            raise ConfigurationError(
                f"TrainSpec validation_split must be a number in [0, 1), got {validation_split!r}")
        if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
            raise ConfigurationError(
                "TrainSpec early_stopping must be an EarlyStopping or None, got "
                f"{type(early_stopping).__qualname__}")
        if seed != AUTO_SEED and not (_is_int(seed) and 0 <= int(seed) < SEED_LIMIT):
            raise ConfigurationError(
                f"TrainSpec seed must be 'auto' (each trained object derives its own seed from "
                f"its dry_id) or a whole number in [0, 2**32), got {seed!r}")
        if not isinstance(shuffle, bool):
            raise ConfigurationError(f"TrainSpec shuffle must be True or False, got {shuffle!r}")
        self.epochs, self.batch_size = epochs, batch_size
        self.validation_split, self.early_stopping = validation_split, early_stopping
        #: True under ``seed="auto"``: :meth:`seed_for` derives the seed from the trained id.
        self.auto_seed = seed == AUTO_SEED
        #: The explicit seed (0 under ``"auto"``, for code that reads it directly; use
        #: :meth:`seed_for` to get the seed an object trains with).
        self.seed: int = 0 if self.auto_seed else int(seed)
        self.shuffle = shuffle

    def seed_for(self, trained: Object) -> int:
        """The seed ``trained`` (the object this spec trains) uses: the explicit seed, or
        under ``"auto"`` the one derived from ``trained.dry_id``."""
        return derived_seed(trained.dry_id) if self.auto_seed else self.seed

    @property
    def split_seed(self) -> int:
        """The seed of the validation split: the explicit seed, or under ``"auto"`` one
        derived from this spec's own ``dry_id``. Trainables of any framework that share one
        TrainSpec hold out the same rows, while their weights, seeded by their own ids,
        differ (the trained object's seed made each hold out other rows)."""
        return derived_seed(self.dry_id) if self.auto_seed else self.seed


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
