"""Benchmark: dryml's ``ray`` executor on a local two-node Ray cluster.

1. Per-call overhead of a trivial decorated call (``@compute_context``, warm worker): the Ray
   executor against the local warm pool and against a bare ``ray.get(f.remote(x))`` (a Ray
   task) and a bare call of a warm Ray actor's method. Median over ``--calls`` calls.
2. Wall time of ``--trials`` short trials (LogisticRegression ``C`` on digits): dryml
   ``Search(executor="ray", parallel=2)`` (every model kept in the driver's Repo) against Ray
   Tune used directly on the same cluster (2 concurrent trials, nothing saved).

The cluster is started here (``ray start --block`` head with 1 CPU and a second node with 1
CPU, both on this machine, at 127.0.0.1) and stopped at the end. Run it in a network
namespace of its own, where Ray listens on loopback only (``nox -s bench`` does):
``unshare --net -- python tests/ray/isolated_net.py python benchmarks/bench_ray.py``.
Targets (issue 13): Ray-executor call overhead within 2x of a bare Ray task; the trials faster
than Ray Tune direct.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "ray"))

from cluster import RAY_ENV, RayCluster  # noqa: E402

import dryml.context as dc  # noqa: E402
from dryml import ObjectDef  # noqa: E402
from dryml.data import NumpyDataset  # noqa: E402
from dryml.search import Float, Search  # noqa: E402


@dc.compute_context({"default": {}})
def noop(x: int) -> int:
    """The trivial call."""
    return x


def median_ms(fn: Any, n: int) -> float:
    times = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def overhead(address: str, n: int) -> dict[str, float]:
    import ray

    out = {}
    dc.configure(executor="local")
    noop(0)
    out["dryml local pool"] = median_ms(noop, n)
    dc.configure(executor="ray", address=address)
    noop(0)
    out["dryml ray executor"] = median_ms(noop, n)
    dc.shutdown_workers()  # its actor's CPU goes back for the bare rows

    @ray.remote(num_cpus=1)
    def task(x: int) -> int:
        return x

    ray.get(task.remote(0))
    out["bare ray.get(task.remote())"] = median_ms(lambda i: ray.get(task.remote(i)), n)

    @ray.remote(num_cpus=1)
    class Echo:
        def echo(self, x: int) -> int:
            return x

    actor = Echo.remote()  # type: ignore[attr-defined]
    ray.get(actor.echo.remote(0))
    out["bare ray.get(actor.m.remote())"] = median_ms(
        lambda i: ray.get(actor.echo.remote(i)), n)
    ray.kill(actor)
    return out


def digits() -> tuple[NumpyDataset, NumpyDataset]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype(np.float32), y.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(0.8 * len(x))
    return (NumpyDataset((x[order[:cut]], y[order[:cut]]), supervised=True),
            NumpyDataset((x[order[cut:]], y[order[cut:]]), supervised=True))


def run_dryml(n: int, train: Any, valid: Any) -> tuple[float, float]:
    from dryml_sklearn.models import Estimator, SklearnTrainable

    space = ObjectDef(SklearnTrainable, ObjectDef(
        Estimator, "sklearn.linear_model.LogisticRegression", C=Float(1e-3, 1e2, log=True),
        max_iter=300))
    repo = tempfile.mkdtemp() + "/repo"
    # warm actors first (Tune pays its trainable's imports inside its clock, dryml once)
    Search(space, repo=repo, name="warm", n_trials=2, parallel=2,
           executor="ray").run(train, valid)
    start = time.perf_counter()
    result = Search(space, repo=repo, name="bench", sampler="random", n_trials=n, seed=0,
                    parallel=2, executor="ray").run(train, valid)
    return time.perf_counter() - start, result.best_value


def run_tune(n: int, train: Any, valid: Any) -> tuple[float, float]:
    from ray import tune

    (xt, yt), (xv, yv) = train.peek(), valid.peek()

    def trainable(config: dict[str, Any]) -> dict[str, float]:
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        model = LogisticRegression(C=config["C"], max_iter=300).fit(xt, yt)
        return {"accuracy": float((model.predict(xv) == yv).mean())}

    start = time.perf_counter()
    tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}),
                       param_space={"C": tune.loguniform(1e-3, 1e2)},
                       tune_config=tune.TuneConfig(num_samples=n, metric="accuracy",
                                                   mode="max", max_concurrent_trials=2),
                       run_config=tune.RunConfig(verbose=0,
                                                 storage_path=tempfile.mkdtemp()))
    best = tuner.fit().get_best_result().metrics["accuracy"]
    return time.perf_counter() - start, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    os.environ.update(RAY_ENV)
    cluster = RayCluster()
    try:
        cluster.start()
        os.environ["RAY_ADDRESS"] = cluster.address
        rows = overhead(cluster.address, args.calls)
        bare = rows["bare ray.get(task.remote())"]
        print(f"\nPer-call overhead, trivial call, median of {args.calls} (ms)")
        print(f"{'path':34} {'ms/call':>8} {'vs bare task':>13}")
        for name, ms in rows.items():
            print(f"{name:34} {ms:8.2f} {ms / bare:12.2f}x")
        train, valid = digits()
        dc.configure(executor="ray", address=cluster.address)
        d_s, d_best = run_dryml(args.trials, train, valid)
        dc.shutdown_workers()
        t_s, t_best = run_tune(args.trials, train, valid)
        print(f"\n{args.trials} LogisticRegression trials on digits, 2 at once, 2-node cluster")
        print(f"{'runner':34} {'wall s':>8} {'best acc':>9}")
        print(f"{'dryml Search(executor=ray)':34} {d_s:8.2f} {d_best:9.4f}")
        print(f"{'Ray Tune direct':34} {t_s:8.2f} {t_best:9.4f}")
        print(f"dryml / Tune wall time: {d_s / t_s:.2f}x")
    finally:
        dc.configure()
        import ray

        ray.shutdown()
        cluster.stop()


if __name__ == "__main__":
    main()
