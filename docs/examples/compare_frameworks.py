"""The main job: compare models from four frameworks on one footing.

1. loads scikit-learn's bundled digits data (no download) into a supervised Dataset and splits
   it into train and test with a fixed seed;
2. defines models across scikit-learn, XGBoost, PyTorch and Keras, each from components
   (estimators, networks, optimizers, losses, one shared training procedure);
3. trains each inside its own compute context (a warm worker process per framework), TF and
   torch at the same time, with progress shown;
4. scores every test example with ``dryml.metrics``;
5. stores each trained model in one Repo per task (``<out>/repo-<task>``, kept across runs:
   each run's models carry their ``run`` in the metadata) and prints how to look at it;
6. prints this run's leaderboard from a Repo query and writes a PNG chart of the metrics and
   training times (``dryml.plot.compare``);
7. reloads the best model from the Repo in a fresh process and checks that its test
   predictions equal the ones computed before saving.

Run: ``python docs/examples/compare_frameworks.py [--task regression] [--out DIR] [--quick]``.

With ``--search N`` it runs one hyperparameter search of N trials instead (``dryml.search``):
the space is a ``Choice`` across the four frameworks, each with its own tuned parameters, on
the same data and split; trials are scored on the TrainSpec's validation split of the training
data, every trial is kept in the Repo, and it prints the best trial per framework (with its
test score) and writes the history plot.
The main process imports neither TensorFlow nor PyTorch: definitions are plain Objects, and
all framework work happens in the workers.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dryml import metrics, plot
from dryml.context import compute_context, shutdown_workers
from dryml.data import NumpyDataset
from dryml.models import EarlyStopping, Trainable, TrainSpec
from dryml.repo import Repo, Selector

CLASSIFICATION = ("accuracy", "macro_f1", "log_loss")
REGRESSION = ("r2", "mse", "mae")
#: What the chart's title says about each task's data (scikit-learn's bundled data sets).
DATA_SETS = {
    "classification": "handwritten digits (scikit-learn load_digits: 8x8 images, 10 classes)",
    "regression": "diabetes progression (scikit-learn load_diabetes: 10 features)",
}
STANDARDIZED = ("the target is standardized with the training rows' mean and standard "
                "deviation: mae is in target standard deviations, mse in target variances; r2 "
                "is unchanged")
#: Which way each metric improves (the leaderboard sorts on all of them, in order: ties of
#: the first are broken by the next, never by the models' random ids).
HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "log_loss": False, "r2": True,
                    "mse": False, "mae": False}
TIMES = ("train s: wall time of train() in a freshly started worker, two models training at "
         "a time on this machine's cores (first-call costs included): not a speed benchmark")


# -- 1. data ----------------------------------------------------------------------------------
def load_data(task: str, seed: int = 0) -> tuple[NumpyDataset, NumpyDataset, int]:
    """Train and test Datasets (80/20, fixed seed) and the number of features."""
    from sklearn.datasets import load_diabetes, load_digits

    loader = load_digits if task == "classification" else load_diabetes
    x, y = loader(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    train, test = order[:cut], order[cut:]
    if task == "classification":
        x, y = (x / 16.0).astype(np.float32), y.astype(np.int64)  # pixels 0..16: a fixed scale
    else:  # standardized with the training rows' statistics only (the test rows stay unseen)
        x = ((x - x[train].mean(axis=0)) / x[train].std(axis=0)).astype(np.float32)
        y = ((y - y[train].mean()) / y[train].std()).astype(np.float32)  # R^2 unchanged
    return (NumpyDataset((x[train], y[train]), supervised=True),
            NumpyDataset((x[test], y[test]), supervised=True), x.shape[1])


# -- 2. models from components ----------------------------------------------------------------
def define_models(task: str, n_features: int, quick: bool) -> dict[str, Trainable]:
    """At least one model per framework, each built from components."""
    from dryml_sklearn.models import Estimator, SklearnTrainable
    from dryml_tf import models as keras
    from dryml_torch import models as torch
    from dryml_xgboost.models import XGBoostTrainable

    classify = task == "classification"
    kind = "classifier" if classify else "regressor"
    outputs = 10 if classify else 1
    # one training procedure, shared by all five models (the same validation rows for each)
    spec = TrainSpec(epochs=3 if quick else 60, batch_size=32, validation_split=0.1,
                     early_stopping=EarlyStopping(patience=5), seed=0)
    torch_layers = [("Linear", {"in_features": n_features, "out_features": 128}),
                    ("ReLU", {}), ("Linear", {"in_features": 128, "out_features": outputs})]
    keras_layers = [("Dense", {"units": 128, "activation": "relu"}),
                    ("Dense", {"units": outputs,
                               **({"activation": "softmax"} if classify else {})})]
    trees = 20 if quick else 300
    if classify:
        linear = Estimator("sklearn.linear_model.LogisticRegression", max_iter=2000)
        forest = Estimator("sklearn.ensemble.RandomForestClassifier", n_estimators=trees,
                           random_state=0)
        torch_loss, keras_loss = torch.Loss("CrossEntropyLoss"), keras.Loss(
            "SparseCategoricalCrossentropy")
    else:
        linear = Estimator("sklearn.linear_model.Ridge", alpha=1.0)
        forest = Estimator("sklearn.ensemble.RandomForestRegressor", n_estimators=trees,
                           random_state=0)
        torch_loss, keras_loss = torch.Loss("MSELoss"), keras.Loss("MeanSquaredError")
    return {  # every model gets the spec: it holds out the same validation rows for each
        "sklearn linear": SklearnTrainable(linear, task=kind, spec=spec),
        "sklearn random forest": SklearnTrainable(forest, task=kind, spec=spec),
        "xgboost": XGBoostTrainable(task=kind, spec=spec, n_estimators=trees, max_depth=4,
                                    learning_rate=0.1),
        "torch mlp": torch.TorchTrainable(torch.Sequential(torch_layers),
                                          torch.Optimizer("Adam", lr=1e-3), torch_loss, spec,
                                          task=kind),
        "keras mlp": keras.KerasTrainable(keras.Sequential(keras_layers,
                                                           input_shape=(n_features,)),
                                          keras.Optimizer("Adam", learning_rate=1e-3),
                                          keras_loss, spec, task=kind),
    }


# -- 3-5. train, score and store, inside the model's own compute context ----------------------
@compute_context()  # the requirement comes from the Object passed in: its framework
def train_score_store(model: Trainable, train: NumpyDataset, test: NumpyDataset,
                      repo_dir: str, name: str, names: tuple[str, ...], run: str
                      ) -> dict[str, Any]:
    """Runs in a worker for the model's framework; returns scores and test predictions."""
    start = time.perf_counter()
    model.train(train)
    seconds = round(time.perf_counter() - start, 1)  # as stored, printed and drawn
    predictions = np.asarray(model.eval(test).peek()[0])
    # scored in float64 for every framework: log_loss clips a zero probability at the
    # predictions' own precision, which would cost a float64 model more than a float32 one
    scores = metrics.score(predictions.astype(np.float64), test, metrics=list(names))
    Repo(repo_dir).add_object(model, metadata={
        "name": name, "framework": type(model).dry_framework, "metrics": scores,
        "train_seconds": seconds, "run": run})
    return {"id": model.dry_id, "scores": scores, "seconds": seconds,
            "predictions": predictions}


def train_all(models: dict[str, Trainable], train: NumpyDataset, test: NumpyDataset,
              repo_dir: Path, names: tuple[str, ...], run: str) -> dict[str, dict[str, Any]]:
    """Every model in its own worker; TF and torch are submitted first, so they run together."""
    order = sorted(models, key=lambda n: type(models[n]).dry_framework not in ("tf", "torch"))
    results: dict[str, dict[str, Any]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(models)) as pool:
        futures = {}
        for name in order:
            print(f"[dryml] queued   {name:<22} ({type(models[name]).dry_framework} worker)",
                  flush=True)
            futures[pool.submit(train_score_store, models[name], train, test, str(repo_dir),
                                name, names, run)] = name
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                results[name] = future.result()
            except Exception as exc:  # noqa: BLE001 - report it, keep the other models
                print(f"[dryml] FAILED   {name:<22}: {type(exc).__name__}: {exc}", flush=True)
                continue
            shown = ", ".join(f"{k} {v:.4f}" for k, v in results[name]["scores"].items())
            print(f"[dryml] finished {name:<22} in {results[name]['seconds']:6.1f} s: {shown}",
                  flush=True)
    return results


# -- 6. leaderboard and chart -----------------------------------------------------------------
def leaderboard(repo: Repo, names: tuple[str, ...], run: str) -> list[dict[str, Any]]:
    """This run's rows of the leaderboard, from a Repo query on the metadata, best first:
    by the first metric, ties broken by the next ones (each in its own direction)."""
    entries = repo.entries(Selector(Trainable), where={"run": run})
    entries.sort(key=lambda e: [e["metadata"]["metrics"][n] * (-1 if HIGHER_IS_BETTER[n] else 1)
                                for n in names] + [e["metadata"]["name"]])
    print(f"\n{'rank':<5}{'model':<24}{'framework':<10}" + "".join(f"{n:>11}" for n in names)
          + f"{'train s':>9}")
    for rank, entry in enumerate(entries, 1):
        meta = entry["metadata"]
        print(f"{rank:<5}{meta['name']:<24}{meta['framework']:<10}"
              + "".join(f"{meta['metrics'][n]:>11.4f}" for n in names)
              + f"{meta['train_seconds']:>9.1f}")
    print(TIMES)
    return entries


def chart(entries: list[dict[str, Any]], names: tuple[str, ...], task: str, n_test: int,
          path: Path) -> None:
    """A PNG with one bar chart per metric and one of training time, the best model marked."""
    plot.compare(entries, names, title=f"{DATA_SETS[task]}: {task}, scored on {n_test} "
                 "held-out test examples",
                 note=f"{STANDARDIZED}; {TIMES}" if task == "regression" else TIMES, path=path)


def where_to_look(repo_dir: Path, run: str, key: str, runs: int) -> None:
    """Say where the Repo is and the command that lists this run's models in it."""
    shown = shlex.quote(str(repo_dir))
    args = f"repo ls {shown} --where run={run} --order-by metrics.{key} --desc"
    print(f"\nrepo: {repo_dir} ({runs} run{'s' * (runs != 1)} kept there; this one is "
          f"run={run})\nlook at this run's models: dryml {args}")
    script = Path(sys.executable).parent / "dryml"
    if sys.prefix != sys.base_prefix and script.exists():  # a virtualenv (nox): say which dryml
        print(f"  (with this environment's dryml: {shlex.quote(str(script))} {args})")


# -- 7. reload the best model in a fresh process ----------------------------------------------
RELOAD = """
import sys, numpy as np
from dryml.repo import Repo
model = Repo(sys.argv[1]).get_one(sys.argv[2])
data = np.load(sys.argv[3])
from dryml.data import NumpyDataset
out = model.eval(NumpyDataset((data["x"], data["y"]), supervised=True))
np.save(sys.argv[4], np.asarray(out.peek()[0]))
"""


def check_reload(repo_dir: Path, best_id: str, test: NumpyDataset, expected: np.ndarray,
                 out: Path) -> None:
    x, y = test.peek()
    np.savez(out / "test.npz", x=x, y=y)
    subprocess.run([sys.executable, "-c", RELOAD, str(repo_dir), best_id, str(out / "test.npz"),
                    str(out / "reloaded.npy")], check=True)
    reloaded = np.load(out / "reloaded.npy")
    if reloaded.dtype != expected.dtype or not np.array_equal(reloaded, expected):
        raise SystemExit("the reloaded best model predicts differently from before saving")
    print(f"\nreloaded the best model ({best_id}) in a fresh process: "
          f"its {len(expected)} test predictions are identical")


# -- --search N: one search across the four frameworks ----------------------------------------
def search_space(task: str, n_features: int, quick: bool) -> Any:
    """A Choice across the frameworks, each definition with its own markers."""
    from dryml import ObjectDef
    from dryml.search import Choice, Float, Int
    from dryml_sklearn.models import Estimator, SklearnTrainable
    from dryml_tf import models as keras
    from dryml_torch import models as torch
    from dryml_xgboost.models import XGBoostTrainable

    classify = task == "classification"
    kind = "classifier" if classify else "regressor"
    outputs = 10 if classify else 1
    spec = ObjectDef(TrainSpec, epochs=3 if quick else 30, batch_size=32, validation_split=0.1,
                     early_stopping=ObjectDef(EarlyStopping, patience=5), seed=0)
    width = Int(32, 256, log=True, name="torch.width")  # one value for both layers
    torch_net = ObjectDef(torch.Sequential, [
        ("Linear", {"in_features": n_features, "out_features": width}), ("ReLU", {}),
        ("Linear", {"in_features": width, "out_features": outputs})])
    keras_net = ObjectDef(keras.Sequential, [
        ("Dense", {"units": Int(32, 256, log=True), "activation": "relu"}),
        ("Dense", {"units": outputs, **({"activation": "softmax"} if classify else {})})],
        input_shape=(n_features,))
    linear = (ObjectDef(Estimator, "sklearn.linear_model.LogisticRegression",
                        C=Float(1e-2, 1e2, log=True), max_iter=2000) if classify else
              ObjectDef(Estimator, "sklearn.linear_model.Ridge", alpha=Float(1e-3, 1e2, log=True)))
    torch_loss = ObjectDef(torch.Loss, "CrossEntropyLoss" if classify else "MSELoss")
    keras_loss = ObjectDef(keras.Loss, "SparseCategoricalCrossentropy" if classify
                           else "MeanSquaredError")
    return Choice(
        ObjectDef(SklearnTrainable, linear, task=kind, spec=spec),
        ObjectDef(XGBoostTrainable, task=kind, spec=spec,
                  n_estimators=Int(20, 60) if quick else Int(50, 400, log=True),
                  max_depth=Int(2, 8), learning_rate=Float(0.02, 0.3, log=True)),
        ObjectDef(torch.TorchTrainable, torch_net,
                  ObjectDef(torch.Optimizer, "Adam", lr=Float(1e-4, 1e-2, log=True)),
                  torch_loss, spec, task=kind),
        ObjectDef(keras.KerasTrainable, keras_net,
                  ObjectDef(keras.Optimizer, "Adam", learning_rate=Float(1e-4, 1e-2, log=True)),
                  keras_loss, spec, task=kind),
        labels=["sklearn", "xgboost", "torch", "keras"])


def run_search(args: argparse.Namespace) -> int:
    """``--search N``: one search of N trials across the frameworks; best per framework."""
    import importlib.util

    from dryml.search import Search

    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    repo_dir = args.out / f"search-{args.task}-{int(time.time())}"
    names = CLASSIFICATION if args.task == "classification" else REGRESSION
    train, test, n_features = load_data(args.task)
    sampler = "tpe" if importlib.util.find_spec("optuna") else "random"
    print(f"[dryml] search: {args.search} trials ({sampler} sampler) across four frameworks, "
          f"{names[0]} on the validation split; repo {repo_dir}")
    search = Search(search_space(args.task, n_features, args.quick), metric=names[0],
                    repo=repo_dir, name="frameworks", sampler=sampler, n_trials=args.search,
                    seed=0, progress=True)
    try:
        result = search.run(train)
        best_per: dict[str, dict[str, Any]] = {}
        for trial in result.trials:
            if trial["status"] != "complete":
                continue
            framework = trial["params"]["model"]
            old = best_per.get(framework)
            if old is None or (trial["values"][0] > old["values"][0]) == (
                    result.directions[0] == "maximize"):
                best_per[framework] = trial
        print(f"\n{'framework':<10}{'trial':>6}{'valid ' + names[0]:>16}"
              f"{'test ' + names[0]:>15}  params")
        sign = -1 if result.directions[0] == "maximize" else 1
        for framework, trial in sorted(best_per.items(),
                                       key=lambda kv: sign * kv[1]["values"][0]):
            model = result.repo.load(trial["dry_id"])
            test_score = metrics.METRICS[names[0]](model, test)
            params = ", ".join(f"{k.split('.', 1)[-1]}={v:.4g}" if isinstance(v, float)
                               else f"{k.split('.', 1)[-1]}={v}"
                               for k, v in trial["params"].items() if k != "model")
            print(f"{framework:<10}{trial['number']:>6}{trial['values'][0]:>16.4f}"
                  f"{test_score:>15.4f}  {params}")
    finally:
        shutdown_workers()
    plot = result.plot(args.out / f"search-history-{args.task}.png")
    print(f"\nhistory plot: {plot}\n`dryml search show {repo_dir} frameworks` shows every trial")
    print(f"total time: {time.perf_counter() - start:.1f} s")
    done = sum(t["status"] == "complete" for t in result.trials)
    return 0 if done == args.search else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["classification", "regression"],
                        default="classification")
    parser.add_argument("--out", type=Path, default=Path("compare-out"),
                        help="folder for the repo, the chart and scratch files")
    parser.add_argument("--quick", action="store_true", help="few epochs/trees (for tests)")
    parser.add_argument("--search", type=int, metavar="N",
                        help="run a hyperparameter search of N trials across the frameworks "
                             "instead of the fixed comparison")
    args = parser.parse_args(argv)
    if args.search:
        return run_search(args)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    # one Repo per task, kept across runs; each run's models carry their run in the metadata
    repo_dir = (args.out / f"repo-{args.task}").absolute()
    repo = Repo(repo_dir, create=True)
    # to the second, and the process: two runs started together keep their models apart
    run = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}" + ("-quick" if args.quick else "")
    names = CLASSIFICATION if args.task == "classification" else REGRESSION
    train, test, n_features = load_data(args.task)
    n_test = len(test.peek()[0])
    print(f"[dryml] {args.task} on {DATA_SETS[args.task]}: {len(train.peek()[0])} train / "
          f"{n_test} test examples, {n_features} features"
          + (f"; {STANDARDIZED}" if args.task == "regression" else ""))
    print(f"[dryml] repo: {repo_dir} (run={run})")
    models = define_models(args.task, n_features, args.quick)
    try:
        results = train_all(models, train, test, repo_dir, names, run)
    finally:
        shutdown_workers()
    if not results:
        print("no model finished training", file=sys.stderr)
        return 1
    key = names[0]
    entries = leaderboard(repo, names, run)
    chart(entries, names, args.task, n_test, args.out / f"metrics-{args.task}.png")
    print(f"\nchart: {args.out / f'metrics-{args.task}.png'}")
    runs = {e["metadata"].get("run") for e in repo.entries(Selector(Trainable))}
    where_to_look(repo_dir, run, key, len(runs))
    best = entries[0]
    expected = next(r["predictions"] for r in results.values() if r["id"] == best["dry_id"])
    check_reload(repo_dir, best["dry_id"], test, expected, args.out)
    summary = {e["metadata"]["name"]: e["metadata"]["metrics"] for e in entries}
    (args.out / f"leaderboard-{args.task}.json").write_text(json.dumps(summary, indent=1))
    imported = sorted(m for m in ("tensorflow", "torch", "keras", "xgboost", "sklearn")
                      if m in sys.modules)
    print(f"frameworks imported by the main process: {', '.join(imported) or 'none'} "
          "(training and evaluation ran in the workers)")
    print(f"total time: {time.perf_counter() - start:.1f} s")
    failed = sorted(set(models) - set(results))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    # the full classification run promises every model above 0.9 test accuracy
    weak = [name for name, scores in summary.items() if args.task == "classification"
            and not args.quick and scores["accuracy"] <= 0.9]
    if weak:
        print(f"test accuracy not above 0.9: {', '.join(weak)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
