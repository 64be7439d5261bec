"""Save/load speed and size of dryml's Keras and scikit-learn serializers vs the native paths.

Rows (each only where its framework is installed):

* a 200-tree RandomForest: ``joblib.dump``/``joblib.load`` vs ``save_object``/``load_object``
  (default zstd-compressed members, and ``compress=False``), with ``skops.io.dump``/``load``
  alone beside them;
* a Keras model of ~117 MB of float32 weights: ``model.save("x.keras")`` /
  ``keras.models.load_model`` vs ``save_object``/``load_object``.

Times are the best of ``--repeat`` runs (wall clock, files in a temporary directory, so the
page cache serves reads); ratios are dryml / native (lower is better). Run:
``python benchmarks/bench_serializers_tf_sklearn.py [--repeat N] [--only sklearn|keras]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dryml import Object, load_object, save_object

Row = tuple[str, float, float, int]  # label, save s, load s, bytes


class Holder(Object):
    """Keeps one framework object in the store, as a user's Object would."""

    def __init__(self, label: str = "") -> None:
        self.value: Any = None

    def save_object_imp(self, store: Any) -> None:
        store.put("value", self.value)

    def load_object_imp(self, store: Any) -> None:
        self.value = store.get("value")


def best(fn: Callable[[], Any], repeat: int) -> float:
    """Fastest of ``repeat`` wall-clock runs of ``fn``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(label: str, path: Path, save: Callable[[Path], Any], load: Callable[[Path], Any],
            repeat: int) -> Row:
    """Save and load times (best of ``repeat``) and the file size."""
    save_time = best(lambda: save(path), repeat)
    load_time = best(lambda: load(path), repeat)
    return label, save_time, load_time, path.stat().st_size


def dryml_paths(value: Any, compress: bool = True) -> tuple[Callable[[Path], Any],
                                                            Callable[[Path], Any]]:
    """save/load functions that put ``value`` in a ``.dry`` file through an Object."""
    holder = Holder()
    holder.value = value
    return (lambda p: save_object(holder, p, compress=compress),
            lambda p: load_object(p).value)


def bench_sklearn(tmp: Path, repeat: int) -> list[tuple[Row, Row]]:
    """A 200-tree RandomForest: dryml (compressed and not) and skops.io vs joblib."""
    import joblib
    import skops.io
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(10_000, 20, n_informative=10, random_state=0)
    forest = RandomForestClassifier(200, random_state=0, n_jobs=-1).fit(x, y)
    native = measure("joblib", tmp / "rf.joblib", lambda p: joblib.dump(forest, p),
                     joblib.load, repeat)
    trusted = ["sklearn.tree._tree.Tree"]
    rows = []
    for label, (save, load) in (("dryml", dryml_paths(forest)),
                                ("dryml compress=False", dryml_paths(forest, False))):
        rows.append((native, measure(f"RandomForest 200 trees: {label}", tmp / "rf.dry",
                                     save, load, repeat)))
    rows.append((native, measure("RandomForest 200 trees: skops.io alone", tmp / "rf.skops",
                                 lambda p: skops.io.dump(forest, p),
                                 lambda p: skops.io.load(p, trusted=trusted), repeat)))
    return rows


def bench_keras(tmp: Path, repeat: int) -> list[tuple[Row, Row]]:
    """A ~117 MB Keras MLP: dryml vs model.save('x.keras') / keras.models.load_model."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2048,)), keras.layers.Dense(4096, activation="relu"),
                              keras.layers.Dense(4096, activation="relu"),
                              keras.layers.Dense(1000)])
    native = measure("model.save", tmp / "m.keras", model.save, keras.models.load_model, repeat)
    save, load = dryml_paths(model)
    mb = sum(w.numpy().nbytes for w in model.weights) / 2**20
    return [(native, measure(f"Keras MLP {mb:.0f} MB: dryml", tmp / "m.dry", save, load,
                             repeat))]


def table(rows: list[tuple[Row, Row]]) -> str:
    """The side-by-side table: native vs dryml time and size, with ratios."""
    head = (f"{'case':44} {'native':>9} {'save s':>7} {'x':>5} {'native':>7} {'load s':>7} "
            f"{'x':>5} {'native MB':>9} {'MB':>7} {'x':>5}")
    lines = [head, "-" * len(head)]
    for (_, ns, nl, nb), (label, ds, dl, db) in rows:
        lines.append(f"{label:44} {ns:9.3f} {ds:7.3f} {ds / ns:5.2f} {nl:7.3f} {dl:7.3f} "
                     f"{dl / nl:5.2f} {nb / 2**20:9.1f} {db / 2**20:7.1f} {db / nb:5.2f}")
    return "\n".join(lines)


def main() -> None:
    """Run the benchmarks whose frameworks are installed and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=["sklearn", "keras"])
    args = parser.parse_args()
    rows: list[tuple[Row, Row]] = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, bench in (("sklearn", bench_sklearn), ("keras", bench_keras)):
            if args.only not in (None, name):
                continue
            try:
                rows += bench(Path(tmp), args.repeat)
            except ImportError as exc:
                print(f"{name}: skipped ({exc})")
    print(table(rows))
    print("ratios are dryml / native (joblib for scikit-learn, .keras for Keras); "
          "best of", args.repeat, "wall-clock runs")


if __name__ == "__main__":
    main()
