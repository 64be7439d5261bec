"""Copies of one definition train differently; a reloaded or rebuilt one trains the same."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dryml import ObjectDef, load_object, save_object
from dryml.data import NumpyDataset
from dryml.errors import ConfigurationError
from dryml.models import Trainable, TrainSpec, supervised_arrays


class RandomFeatures(Trainable):
    """A numpy model whose training draws random numbers from its train seed."""

    task = "regressor"

    def __init__(self, spec: TrainSpec | None = None) -> None:
        self.spec = spec
        self.weights: np.ndarray | None = None

    def fit(self, data, valid) -> None:  # type: ignore[no-untyped-def]
        x, y = supervised_arrays(data)
        rng = np.random.default_rng(self.train_seed)
        proj = rng.normal(size=(x.shape[1], 8))
        feats = np.tanh(x @ proj)
        self.weights = np.concatenate([proj, np.linalg.lstsq(feats, y, rcond=None)[0][None]])

    def predict(self, x):  # type: ignore[no-untyped-def]
        assert self.weights is not None
        return np.tanh(np.asarray(x) @ self.weights[:-1]) @ self.weights[-1]

    def save_object_imp(self, store) -> None:  # type: ignore[no-untyped-def]
        if self.weights is not None:
            store.put("weights", self.weights)

    def load_object_imp(self, store) -> None:  # type: ignore[no-untyped-def]
        self.weights = store.get("weights", None)


def data() -> NumpyDataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3))
    return NumpyDataset((x, x.sum(axis=1)), supervised=True)


def trained_weights(model: RandomFeatures) -> np.ndarray:
    model.train(data())
    assert model.weights is not None
    return model.weights


def test_copies_of_one_definition_train_differently_by_default() -> None:
    definition = ObjectDef(RandomFeatures, TrainSpec(epochs=1))
    copies = [definition.build() for _ in range(3)]
    assert len({c.dry_id for c in copies}) == 3
    assert len({c.train_seed for c in copies}) == 3
    weights = [trained_weights(c) for c in copies]
    assert not np.array_equal(weights[0], weights[1])
    assert not np.array_equal(weights[1], weights[2])
    no_spec = [RandomFeatures() for _ in range(2)]  # no spec at all: per copy too
    assert not np.array_equal(trained_weights(no_spec[0]), trained_weights(no_spec[1]))


def test_a_reloaded_or_rebuilt_object_trains_the_same(tmp_path: Path) -> None:
    model = RandomFeatures(TrainSpec())
    save_object(model, tmp_path / "untrained.dry")
    reloaded = load_object(tmp_path / "untrained.dry")
    rebuilt = model.definition().build()
    assert reloaded.dry_id == rebuilt.dry_id == model.dry_id
    expected = trained_weights(model)
    assert np.array_equal(trained_weights(reloaded), expected)
    assert np.array_equal(trained_weights(rebuilt), expected)
    fresh = model.definition().without_id().build()  # a new copy: a new id, its own seed
    assert not np.array_equal(trained_weights(fresh), expected)


def test_an_explicit_seed_is_exactly_that_seed_for_every_copy() -> None:
    definition = ObjectDef(RandomFeatures, TrainSpec(seed=0))
    a, b = definition.build(), definition.build()
    assert a.dry_id != b.dry_id
    assert a.train_seed == b.train_seed == 0
    assert np.array_equal(trained_weights(a), trained_weights(b))
    assert RandomFeatures(TrainSpec(seed=2**32 - 1)).train_seed == 2**32 - 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"seed": None}, r"seed must be 'auto' .* got None"),
    ({"seed": -1}, r"seed must be .* got -1"),
    ({"seed": 2**32}, r"seed must be .* got 4294967296"),
    ({"seed": 1.5}, r"seed must be .* got 1\.5"),
    ({"seed": True}, r"seed must be .* got True"),
    ({"seed": "7"}, r"seed must be .* got '7'"),
    ({"epochs": 0}, r"epochs must be a whole number >= 1, got 0"),
    ({"epochs": 2.5}, r"epochs must be a whole number >= 1, got 2\.5"),
    ({"batch_size": None}, r"batch_size must be a whole number >= 1, got None"),
    ({"validation_split": math.nan}, r"validation_split must be a number in \[0, 1\)"),
    ({"validation_split": "0.1"}, r"validation_split must be a number in \[0, 1\)"),
    ({"shuffle": "yes"}, r"shuffle must be True or False"),
    ({"validation_split": 0.2, "early_stopping": 3}, r"early_stopping must be an EarlyStopping"),
])
def test_invalid_specs_fail_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TrainSpec(**kwargs)
