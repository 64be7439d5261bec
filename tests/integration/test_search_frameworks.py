"""A search whose space is a Choice across frameworks, on digits: real workers per framework,
every trial in the Repo and queryable through its components, params and metrics."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import pytest


def _need(*names: str) -> None:
    """Import ``names`` (skip when missing, unless CI requires the backends)."""
    for name in names:
        if os.environ.get("DRYML_REQUIRE_BACKENDS"):
            importlib.import_module(name)
        else:
            pytest.importorskip(name)


_need("dryml_sklearn", "sklearn", "dryml_xgboost", "xgboost", "dryml_torch", "torch.utils.data")

from dryml import ObjectDef, metrics  # noqa: E402
from dryml.data import NumpyDataset  # noqa: E402
from dryml.models import TrainSpec  # noqa: E402
from dryml.repo import Range, Repo, Selector  # noqa: E402
from dryml.search import Choice, Float, Int, Search  # noqa: E402
from dryml_sklearn.models import Estimator, SklearnTrainable  # noqa: E402
from dryml_torch.models import Optimizer, Sequential, TorchTrainable  # noqa: E402
from dryml_xgboost.models import XGBoostTrainable  # noqa: E402


def digits() -> tuple[NumpyDataset, NumpyDataset]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype(np.float32), y.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(0.8 * len(x))
    return (NumpyDataset((x[order[:cut]], y[order[:cut]]), supervised=True),
            NumpyDataset((x[order[cut:]], y[order[cut:]]), supervised=True))


def frameworks_space() -> ObjectDef:
    width = Int(32, 128, step=32, name="torch.width")
    torch_net = ObjectDef(Sequential, [("Linear", {"in_features": 64, "out_features": width}),
                                       ("ReLU", {}),
                                       ("Linear", {"in_features": width, "out_features": 10})])
    return Choice(
        ObjectDef(SklearnTrainable, ObjectDef(Estimator, "sklearn.linear_model.LogisticRegression",
                                              C=Float(0.05, 20.0, log=True), max_iter=500)),
        ObjectDef(XGBoostTrainable, n_estimators=Int(20, 60, step=20), max_depth=Int(2, 5),
                  learning_rate=Float(0.05, 0.4, log=True)),
        ObjectDef(TorchTrainable, torch_net,
                  optimizer=ObjectDef(Optimizer, "Adam", lr=Float(1e-3, 1e-2, log=True)),
                  spec=ObjectDef(TrainSpec, epochs=5, batch_size=32, seed=0)),
        labels=["sklearn", "xgboost", "torch"])


def test_a_choice_across_frameworks_finds_a_model_above_095(tmp_path: Path) -> None:
    train, test = digits()
    result = Search(frameworks_space(), metric="accuracy", repo=tmp_path / "repo",
                    name="digits", sampler="random", n_trials=20, seed=0).run(train, test)
    assert len([t for t in result.trials if t["status"] == "complete"]) == 20
    assert result.best_value > 0.95
    best = result.best
    assert metrics.accuracy(best, test) == pytest.approx(result.best_value)
    chosen = {t["params"]["model"] for t in result.trials}
    assert chosen == {"sklearn", "xgboost", "torch"}
    for t in result.trials:  # a parameter of an unchosen option is never sampled
        assert all(k == "model" or k.startswith(t["params"]["model"] + ".")
                   for k in t["params"])
    repo = Repo(tmp_path / "repo")
    adam = Selector(TorchTrainable, kwargs={"optimizer": Selector(Optimizer, args=("Adam",))})
    torch_trials = [t for t in result.trials if t["params"]["model"] == "torch"]
    assert {m.dry_id for m in repo.get(adam)} == {t["dry_id"] for t in torch_trials}
    good = repo.get(Selector(XGBoostTrainable), where={"metrics.accuracy": Range(0.9, None),
                                                       "params.xgboost.max_depth": Range(3, 5)})
    assert {m.dry_id for m in good} == {
        t["dry_id"] for t in result.trials if t["params"]["model"] == "xgboost"
        and t["metrics"]["accuracy"] >= 0.9 and t["params"]["xgboost.max_depth"] >= 3}
    top = repo.entries(where={"search": "digits"}, order_by="metrics.accuracy",
                       descending=True, limit=1)
    assert top[0]["metadata"]["metrics"]["accuracy"] == result.best_value


def test_a_pruner_stops_torch_trials_from_their_epoch_reports(tmp_path: Path) -> None:
    if not os.environ.get("DRYML_REQUIRE_OPTUNA"):
        pytest.importorskip("optuna")
    import optuna

    train, test = digits()
    net = ObjectDef(Sequential, [("Linear", {"in_features": 64, "out_features": 32}),
                                 ("ReLU", {}), ("Linear", {"in_features": 32, "out_features": 10})])
    space = ObjectDef(TorchTrainable, net,
                      optimizer=ObjectDef(Optimizer, "SGD", lr=Float(1e-5, 0.5, log=True)),
                      spec=ObjectDef(TrainSpec, epochs=6, batch_size=64,
                                     validation_split=0.2, seed=0))
    result = Search(space, repo=tmp_path / "repo", name="prune", sampler="tpe", n_trials=8,
                    seed=0, pruner=optuna.pruners.MedianPruner(n_startup_trials=2)
                    ).run(train, test)
    pruned = [t for t in result.trials if t["status"] == "pruned"]
    assert pruned, [t["metrics"] for t in result.trials]
    assert all(t["last_epoch"]["epoch"] < 6 and "val_accuracy" in t["last_epoch"]
               and t["metrics"] == {} for t in pruned)


def test_a_pruner_stops_xgboost_trials_from_their_round_reports(tmp_path: Path) -> None:
    # XGBoost reports each boosting round (through XGBoostTrainable.on_epoch_end); the search
    # minimizes log loss and the pruner watches the validation log loss, the same direction.
    if not os.environ.get("DRYML_REQUIRE_OPTUNA"):
        pytest.importorskip("optuna")
    import optuna

    train, test = digits()
    space = ObjectDef(XGBoostTrainable, n_estimators=30, max_depth=2,
                      learning_rate=Float(1e-4, 0.5, log=True),
                      spec=ObjectDef(TrainSpec, validation_split=0.2, seed=0))
    result = Search(space, metric="log_loss", direction="minimize", monitor="val_mlogloss",
                    repo=tmp_path / "repo", name="prune-xgb", sampler="tpe", n_trials=8, seed=0,
                    pruner=optuna.pruners.MedianPruner(n_startup_trials=2)).run(train, test)
    pruned = [t for t in result.trials if t["status"] == "pruned"]
    assert pruned, [t["metrics"] for t in result.trials]
    assert all("val_mlogloss" in t["last_epoch"] and t["last_epoch"]["round"] < 30
               for t in pruned), pruned
