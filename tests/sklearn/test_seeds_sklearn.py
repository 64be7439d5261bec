"""Copies of one definition train differently (each derives its seed from its dry_id), and a
reloaded copy trains exactly as before (issue 14: "create many copies ... see how well each
trains")."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dryml import ObjectDef, load_object, save_object
from dryml.data import NumpyDataset
from dryml.models import TrainSpec
from dryml_sklearn.models import Estimator, SklearnTrainable


def _train_three(tmp_path: Path, spec: TrainSpec | None) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 4))
    train = NumpyDataset((x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)), supervised=True)
    definition = ObjectDef(SklearnTrainable, Estimator(
        "sklearn.ensemble.RandomForestClassifier", n_estimators=5, max_depth=3), spec=spec)
    a, b = definition.build(), definition.build()
    save_object(a, tmp_path / "a.dry")
    a_again = load_object(tmp_path / "a.dry")
    for model in (a, b, a_again):
        model.train(train)
    probe = NumpyDataset(rng.normal(size=(200, 4)))
    return [m.eval(probe).numpy().peek() for m in (a, b, a_again)]


def test_random_forest_copies_differ_and_a_reload_trains_the_same(tmp_path: Path) -> None:
    pa, pb, pa2 = _train_three(tmp_path, None)
    assert not np.array_equal(pa, pb)
    assert np.array_equal(pa, pa2)


def test_an_explicit_seed_means_that_seed_for_every_copy(tmp_path: Path) -> None:
    pa, pb, pa2 = _train_three(tmp_path, TrainSpec(seed=3))
    assert np.array_equal(pa, pb) and np.array_equal(pa, pa2)
