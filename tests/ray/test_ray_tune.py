"""The Ray Tune adapter: a dryml space as Tune's trainable and param_space, an ASHA scheduler
driving it on the cluster, and every finished trial in a Repo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import ray
from cluster import RayCluster
from ray import tune

from dryml import ObjectDef
from dryml.data import NumpyDataset
from dryml.repo import Repo
from dryml.search import Float, collect_tune, tune_search


def digits() -> tuple[NumpyDataset, NumpyDataset]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype(np.float32), y.astype(np.int64)
    return (NumpyDataset((x[:1400], y[:1400]), supervised=True),
            NumpyDataset((x[1400:], y[1400:]), supervised=True))


def test_tune_drives_a_dryml_space_and_its_trials_land_in_a_repo(cluster: RayCluster,
                                                                  tmp_path: Path) -> None:
    from dryml_sklearn.models import Estimator, SklearnTrainable

    if not ray.is_initialized():
        ray.init(address=cluster.address)
    space = ObjectDef(SklearnTrainable, ObjectDef(
        Estimator, "sklearn.linear_model.LogisticRegression", C=Float(1e-3, 1e2, log=True),
        max_iter=200))
    train, valid = digits()
    trainable, params = tune_search(space, train, valid, metric="accuracy")
    assert set(params) == {"estimator.C"}
    results = tune.Tuner(
        trainable, param_space=params,
        tune_config=tune.TuneConfig(metric="accuracy", mode="max", num_samples=4,
                                    scheduler=tune.schedulers.ASHAScheduler()),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0)).fit()
    assert not results.errors
    assert collect_tune(results, tmp_path / "repo", "tuned") == 4
    repo = Repo(tmp_path / "repo")
    entries = repo.entries(where={"search": "tuned", "status": "complete"})
    assert len(entries) == 4
    best = max(entries, key=lambda e: e["metadata"]["values"][0])
    model = repo.load(best["dry_id"])
    assert model.trained and best["metadata"]["values"][0] > 0.8
    assert 1e-3 <= best["metadata"]["params"]["estimator.C"] <= 1e2
