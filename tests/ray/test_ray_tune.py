"""The Ray Tune adapter: a dryml space as Tune's trainable and param_space, an ASHA scheduler
driving it on the cluster, and every finished trial in a Repo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

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
    assert collect_tune(results, tmp_path / "repo", "tuned", space=space) == 4
    repo = Repo(tmp_path / "repo")
    entries = repo.entries(where={"search": "tuned", "status": "complete"})
    assert len(entries) == 4
    best = max(entries, key=lambda e: e["metadata"]["values"][0])
    model = repo.load(best["dry_id"])
    assert model.trained and best["metadata"]["values"][0] > 0.8
    assert 1e-3 <= best["metadata"]["params"]["estimator.C"] <= 1e2
    # as docs/cluster.md says: the collected search is a search (collect_tune wrote no
    # settings, and `dryml search show` answered "no search named 'tuned'")
    shown = dryml_cli("search", "show", str(tmp_path / "repo"), "tuned")
    assert shown.returncode == 0, shown.stderr
    assert "accuracy" in shown.stdout and f"best: trial {best['metadata']['trial']}" in (
        shown.stdout)
    listed = dryml_cli("search", "ls", str(tmp_path / "repo"))
    assert "tuned: sampler ray-tune, metrics accuracy, 4 trials (4 complete)" in listed.stdout


def dryml_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dryml.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_tune_trains_a_pipe_of_sklearn_steps(cluster: RayCluster, tmp_path: Path) -> None:
    """A Pipe is a 'default' Trainable: its Tune trial entered a 'default' context, where its
    scikit-learn steps refused to train (as in Search, found by review)."""
    from dryml.models import Pipe
    from dryml_sklearn.models import Estimator, SklearnTrainable

    if not ray.is_initialized():
        ray.init(address=cluster.address)
    space = ObjectDef(Pipe, ObjectDef(SklearnTrainable, ObjectDef(
        Estimator, "sklearn.preprocessing.StandardScaler"), task="transformer"),
        ObjectDef(SklearnTrainable, ObjectDef(
            Estimator, "sklearn.linear_model.LogisticRegression", C=Float(1e-2, 1e1, log=True),
            max_iter=200)))
    train, valid = digits()
    trainable, params = tune_search(space, train, valid, metric="accuracy")
    results = tune.Tuner(
        trainable, param_space=params,
        tune_config=tune.TuneConfig(metric="accuracy", mode="max", num_samples=2),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0)).fit()
    assert not results.errors, [str(r.error)[-500:] for r in results if r.error]
    assert collect_tune(results, tmp_path / "repo", "piped") == 2
    best = max(Repo(tmp_path / "repo").entries(where={"search": "piped"}),
               key=lambda e: e["metadata"]["values"][0])
    assert best["metadata"]["values"][0] > 0.8


def test_asha_drives_a_trainable_that_trains_by_epochs(cluster: RayCluster,
                                                       tmp_path: Path) -> None:
    """docs/cluster.md's recipe (metric="accuracy", ASHA) with a Trainable that trains by
    epochs, as torch and Keras ones do: each epoch's report lacked "accuracy", so Tune refused
    it and every trial failed; and train() got no validation data, so no val_* was logged."""
    import toys
    from ray import cloudpickle

    if not ray.is_initialized():
        ray.init(address=cluster.address)
    # Tune's trial processes cannot import tests/ray/toys.py: its classes travel by value
    cloudpickle.register_pickle_by_value(toys)
    try:
        run_epochs_under_asha(toys, tmp_path)
    finally:
        cloudpickle.unregister_pickle_by_value(toys)


def run_epochs_under_asha(toys: Any, tmp_path: Path) -> None:
    ValidToy, blobs = toys.ValidToy, toys.blobs  # noqa: N806 - a class
    # shifts too small to change a prediction: the same val_accuracy every epoch of both
    # trials, so ASHA (which stops a trial below its rung's cutoff) lets both finish
    space = ObjectDef(ValidToy, shift=Float(0.0, 1e-6), epochs=3)
    trainable, params = tune_search(space, blobs(), blobs(seed=1), metric="accuracy")
    results = tune.Tuner(
        trainable, param_space=params,
        tune_config=tune.TuneConfig(metric="accuracy", mode="max", num_samples=2,
                                    scheduler=tune.schedulers.ASHAScheduler()),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0)).fit()
    assert not results.errors, [str(r.error)[-500:] for r in results if r.error]
    for result in results:
        history = result.metrics_dataframe
        # three epochs (their val_accuracy under the metric's name for ASHA), then the score
        assert list(history["epoch"].iloc[:3]) == [1, 2, 3], history
        assert list(history["accuracy"].iloc[:3]) == list(history["val_accuracy"].iloc[:3])
        assert len(history) == 4 and history["accuracy"].notna().all()
    assert collect_tune(results, tmp_path / "repo", "epochs") == 2


def test_tune_samples_only_values_of_the_dryml_space() -> None:
    """A stepped range is dryml's grid, ``low + k * step``: Tune's qrandint/quniform rounded
    to multiples of the step instead (Int(1, 10, step=3) sampled 3, 6, 9, which build_def
    accepted silently) and refused Float(0.05, 0.95, step=0.1) with its own ValueError."""
    from dryml import Object
    from dryml.search import Int
    from dryml.search._space import Space

    class Stepped(Object):
        def __init__(self, n: int = 1, m: int = 1, f: float = 0.05, g: float = 0.0,
                     k: int = 1) -> None:
            self.n, self.m, self.f, self.g, self.k = n, m, f, g, k

    space = Space(ObjectDef(Stepped, n=Int(1, 10, step=3), m=Int(1, 100, step=10),
                            f=Float(0.05, 0.95, step=0.1), g=Float(0.0, 1.0, step=0.25),
                            k=Int(2, 5)))
    params = tune_search(space, None, None)[1]
    grid = {p.name: p.spec.grid_values(p.name) for p in space.params}
    for name in ("n", "m", "f", "g", "k"):
        sampled = set(params[name].sample(size=2000))
        assert sampled == set(grid[name]), (name, sorted(sampled), grid[name])


def test_a_loss_monitor_is_reported_negated_and_only_chosen_params_are_recorded(
        cluster: RayCluster, tmp_path: Path) -> None:
    """Found by review: a monitor that falls as the metric rises (a loss for accuracy) was
    reported as it is under the metric's name, so a scheduler in mode "max" kept the worst
    trials; and collect_tune recorded the markers of Choice options a trial did not choose
    (Tune samples every entry of param_space)."""
    import toys
    from ray import cloudpickle

    from dryml.search import Choice

    if not ray.is_initialized():
        ray.init(address=cluster.address)
    cloudpickle.register_pickle_by_value(toys)
    try:
        space = Choice(ObjectDef(toys.ValidToy, shift=Float(0.0, 1e-6), epochs=2),
                       ObjectDef(toys.ValidToy, shift=0.0, epochs=2), labels=["tuned", "fixed"])
        trainable, params = tune_search(space, toys.blobs(), toys.blobs(seed=1),
                                        metric="accuracy", monitor="loss")
        (choice,) = [key for key in params if "." not in key]
        params[choice] = tune.grid_search(["tuned", "fixed"])
        results = tune.Tuner(
            trainable, param_space=params,
            tune_config=tune.TuneConfig(metric="accuracy", mode="max", num_samples=1),
            run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0)).fit()
        assert not results.errors, [str(r.error)[-500:] for r in results if r.error]
        for result in results:
            history = result.metrics_dataframe
            assert list(history["accuracy"].iloc[:2]) == list(-history["loss"].iloc[:2])
        assert collect_tune(results, tmp_path / "repo", "chosen", space=space) == 2
    finally:
        cloudpickle.unregister_pickle_by_value(toys)
    recorded = {e["metadata"]["params"][choice]: set(e["metadata"]["params"])
                for e in Repo(tmp_path / "repo").entries(where={"search": "chosen"})}
    assert recorded == {"fixed": {choice}, "tuned": {choice, "tuned.shift"}}
