"""Benchmark: dryml ``Search`` against Optuna and Ray Tune used directly, on the same trials.

1. Scheduling overhead per trial with a trivial objective (a Trainable whose ``fit`` does
   nothing, scored by a constant): dryml (worker call, two Repo writes, sampler) against an
   Optuna study whose objective returns a constant. Median over trials.
2. The same objective side by side, 40 trials each (``--trials``) on digits: scikit-learn's
   LogisticRegression ``C`` and a small torch MLP's learning rate and width. dryml serial and
   ``parallel=2`` (every model kept in a Repo), Optuna direct (TPE, the objective trains
   in-process, no model saved) and Ray Tune direct (local Ray, 2 CPUs, when ``ray`` is
   installed).

Run: ``python benchmarks/bench_search.py [--trials 40] [--overhead-trials 200]`` (or
``nox -s bench``). Targets (issue 12, 2 cores): serial dryml within 1.15x Optuna's wall time,
``parallel=2`` >= 1.7x faster than dryml serial, faster than Ray Tune, overhead < 20 ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from dryml import ObjectDef
from dryml.context import shutdown_workers
from dryml.data import NumpyDataset
from dryml.models import Trainable
from dryml.search import Float, Int, Search

EPOCHS = 10


class Nothing(Trainable):
    """Trains instantly: what is left is dryml's per-trial cost."""

    def __init__(self, x: float = 0.0) -> None:
        self.x = x

    def fit(self, data: Any, valid: Any) -> None:
        pass

    def predict(self, x: Any) -> Any:
        return np.zeros((len(x), 2))


def constant(model: Any, data: Any) -> float:
    """A metric that costs nothing."""
    return float(model.x)


def digits() -> tuple[NumpyDataset, NumpyDataset]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype(np.float32), y.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(0.8 * len(x))
    return (NumpyDataset((x[order[:cut]], y[order[:cut]]), supervised=True),
            NumpyDataset((x[order[cut:]], y[order[cut:]]), supervised=True))


# -- 1. overhead ------------------------------------------------------------------------------
def overhead(n: int) -> tuple[float, float]:
    """(dryml median ms per trial, Optuna median ms per trial) with a trivial objective."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x = np.zeros((8, 2), np.float32)
    data = NumpyDataset((x, np.zeros(8, np.int64)), supervised=True)
    repo = tempfile.mkdtemp() + "/repo"
    Search(ObjectDef(Nothing, x=Float(0.0, 1.0)), metric=constant, direction="maximize",
           repo=repo, name="warm", n_trials=3).run(data, data)
    result = Search(ObjectDef(Nothing, x=Float(0.0, 1.0)), metric=constant,
                    direction="maximize", repo=repo, name="trivial", sampler="random",
                    n_trials=n).run(data, data)
    ends = sorted(t["finished"] for t in result.trials)
    dryml_ms = statistics.median(np.diff(ends)) * 1000
    stamps: list[float] = []

    def objective(trial: Any) -> float:
        stamps.append(time.perf_counter())
        return trial.suggest_float("x", 0.0, 1.0)

    optuna.create_study(direction="maximize",
                        sampler=optuna.samplers.RandomSampler(seed=0)).optimize(objective, n)
    return dryml_ms, statistics.median(np.diff(stamps)) * 1000


# -- 2. the same objective, four ways ----------------------------------------------------------
def dryml_spaces() -> dict[str, Any]:
    from dryml.models import TrainSpec
    from dryml_sklearn.models import Estimator, SklearnTrainable
    from dryml_torch.models import Optimizer, Sequential, TorchTrainable

    width = Int(16, 128, log=True, name="width")
    net = ObjectDef(Sequential, [("Linear", {"in_features": 64, "out_features": width}),
                                 ("ReLU", {}),
                                 ("Linear", {"in_features": width, "out_features": 10})])
    return {
        "logreg C": ObjectDef(SklearnTrainable, ObjectDef(
            Estimator, "sklearn.linear_model.LogisticRegression", C=Float(1e-3, 1e2, log=True),
            max_iter=300)),
        "torch lr+width": ObjectDef(TorchTrainable, net, ObjectDef(
            Optimizer, "Adam", lr=Float(1e-4, 1e-1, log=True)),
            spec=ObjectDef(TrainSpec, epochs=EPOCHS, batch_size=64, seed=0)),
    }


def train_direct(kind: str, params: dict[str, Any], train: Any, valid: Any) -> float:
    """The objective trained in-process with the framework alone (no dryml)."""
    (xt, yt), (xv, yv) = train.peek(), valid.peek()
    if kind == "logreg C":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=params["C"], max_iter=300).fit(xt, yt)
        return float((model.predict(xv) == yv).mean())
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    width = params["width"]
    net = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(),
                              torch.nn.Linear(width, 10))
    opt = torch.optim.Adam(net.parameters(), lr=params["lr"])
    tx, ty = torch.from_numpy(xt), torch.from_numpy(yt)
    for _ in range(EPOCHS):
        order = torch.randperm(len(tx))
        for i in range(0, len(tx), 64):
            idx = order[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(tx[idx]), ty[idx]).backward()
            opt.step()
    with torch.no_grad():
        return float((net(torch.from_numpy(xv)).argmax(1).numpy() == yv).mean())


def suggest_direct(kind: str, trial: Any) -> dict[str, Any]:
    if kind == "logreg C":
        return {"C": trial.suggest_float("estimator.C", 1e-3, 1e2, log=True)}
    return {"width": trial.suggest_int("width", 16, 128, log=True),
            "lr": trial.suggest_float("optimizer.lr", 1e-4, 1e-1, log=True)}


def run_optuna(kind: str, n: int, train: Any, valid: Any) -> tuple[float, float]:
    import optuna
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # single-threaded trials, as dryml's workers and Ray's run them

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0))
    start = time.perf_counter()
    study.optimize(lambda t: train_direct(kind, suggest_direct(kind, t), train, valid), n)
    return time.perf_counter() - start, study.best_value


def run_ray(kind: str, n: int, train: Any, valid: Any) -> tuple[float, float] | None:
    if importlib.util.find_spec("ray") is None:
        return None
    import ray
    from ray import tune

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True)
    space = ({"C": tune.loguniform(1e-3, 1e2)} if kind == "logreg C" else
             {"width": tune.lograndint(16, 129), "lr": tune.loguniform(1e-4, 1e-1)})

    def trainable(config: dict[str, Any]) -> dict[str, float]:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        return {"accuracy": train_direct(kind, config, train, valid)}

    start = time.perf_counter()
    tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}), param_space=space,
                       tune_config=tune.TuneConfig(num_samples=n, metric="accuracy",
                                                   mode="max"),
                       run_config=tune.RunConfig(verbose=0))
    best = tuner.fit().get_best_result().metrics["accuracy"]
    seconds = time.perf_counter() - start
    ray.shutdown()
    return seconds, best


def run_dryml(kind: str, space: Any, n: int, parallel: int, train: Any, valid: Any
              ) -> tuple[float, float]:
    repo = tempfile.mkdtemp() + "/repo"
    # a warm worker first (Optuna and Ray pay their imports before their clocks start too)
    Search(space, repo=repo, name="warm", sampler="random", n_trials=parallel,
           parallel=parallel).run(train, valid)
    start = time.perf_counter()
    result = Search(space, repo=repo, name="bench", sampler="tpe", n_trials=n, seed=0,
                    parallel=parallel).run(train, valid)
    return time.perf_counter() - start, result.best_value


def show(kind: str, runner: str, row: tuple[float, float] | None, base: tuple[float, float]
         ) -> None:
    """One line of the table."""
    if row is None:
        print(f"{kind:<16}{runner:<22}{'(ray not installed)':>30}", flush=True)
        return
    print(f"{kind:<16}{runner:<22}{row[0]:>9.1f}{row[1]:>10.4f}{row[0] / base[0]:>10.2f}x",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--overhead-trials", type=int, default=200)
    args = parser.parse_args()
    dryml_ms, optuna_ms = overhead(args.overhead_trials)
    print(f"per-trial overhead, trivial objective (median): dryml {dryml_ms:.1f} ms "
          f"(target < 20), Optuna direct {optuna_ms:.2f} ms")
    train, valid = digits()
    print(f"\n{'objective':<16}{'runner':<22}{'wall s':>9}{'best acc':>10}{'vs optuna':>11}")
    for kind, space in dryml_spaces().items():
        base = run_optuna(kind, args.trials, train, valid)
        show(kind, "optuna direct", base, base)
        for parallel in (1, 2):
            row = run_dryml(kind, space, args.trials, parallel, train, valid)
            show(kind, "dryml serial" if parallel == 1 else "dryml parallel=2", row, base)
        show(kind, "ray tune direct", run_ray(kind, args.trials, train, valid), base)
    shutdown_workers()


if __name__ == "__main__":
    main()
