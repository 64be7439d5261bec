"""Benchmark: every row of issue 16's speed table, side by side, in one command.

* save/load of 1 MB, 100 MB and 1 GB of float32 (``--huge`` adds 4 GB where the disk allows)
  against ``np.save``/``np.load`` and safetensors (``save_file``/``load_file`` and
  ``safe_open``), including ``load_object(path, mmap=True)`` with and without verification,
  and at 1 MB saves over the file of the previous save as well as to new files;
* time to first use of one tensor of a large file: ``mmap=True`` vs ``safe_open``;
* XGBoost 500 trees: save vs ``save_model``, load vs ``load_model`` (once as a process
  loads the same model again, from the memo of checked members, once with the
  model checks run on every load, and once with a one-row prediction after the load: XGBoost
  configures a booster on its first use, which dryml's restored training configuration does
  at load);
* ``Repo.add_object`` of a small Object, one call each, in a large repository (both
  durabilities);
* TensorFlow worker cold start vs a bare ``import tensorflow``.

Methods run round-robin (each round runs every method once) and rows report medians over the
rounds (at least three) with ratios to the native path of the same run; loads read from the
page cache. Missing frameworks (safetensors, xgboost, tensorflow) skip their rows with a
message. Run: ``python benchmarks/bench_speed.py [--huge] [--repo-objects N] [--quick]``
(``--only files --sizes 1,1024`` for the 1 MB and 1 GB rows alone).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_serializers_torch_xgb import Method, fsync_path, run  # noqa: E402

from dryml import Object, load_object, save_object  # noqa: E402

MB = 2**20


class Weights(Object):
    """An Object holding named float32 arrays as state."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def save_object_imp(self, store: Any) -> None:
        for name, array in self.arrays.items():
            store.put(name, array)

    def load_object_imp(self, store: Any) -> None:
        self.arrays = {name: store.get(name) for name in store.names()}


def _arrays(size: int) -> dict[str, np.ndarray]:
    count = 1 if size <= MB else 4
    rng = np.random.default_rng(0)
    return {f"w{i}": rng.standard_normal(size // 4 // count, dtype=np.float32)
            for i in range(count)}


def _mapped(path: Path, verify: bool) -> Any:
    return load_object(path, mmap=True, verify=verify)


def file_methods(arrays: dict[str, np.ndarray]) -> list[Method]:
    obj = Weights()
    obj.arrays = arrays

    def np_save(p: Path) -> None:
        with open(p, "wb") as f:
            for array in arrays.values():
                np.save(f, array)

    def np_save_fsync(p: Path) -> None:
        np_save(p)
        fsync_path(p)

    def np_load(p: Path) -> None:
        with open(p, "rb") as f:
            [np.load(f) for _ in arrays]

    def fast(p: Path) -> None:
        save_object(obj, p, durable=False)

    methods: list[Method] = [
        ("np.save / np.load", np_save, np_load),
        ("np.save+fsync / np.load", np_save_fsync, np_load),
        ("dryml durable=False / load_object", fast, load_object),
        ("dryml durable / load_object", lambda p: save_object(obj, p), load_object),
        ("dryml durable=False / mmap=True (verify)", fast, lambda p: _mapped(p, True)),
        ("dryml durable=False / mmap=True, verify=False", fast, lambda p: _mapped(p, False)),
    ]
    if importlib.util.find_spec("safetensors") is not None:
        from safetensors import safe_open
        from safetensors.numpy import load_file, save_file

        def st_open(p: Path) -> None:
            with safe_open(p, "np") as f:
                [f.get_tensor(k) for k in f.keys()]  # noqa: SIM118 - safe_open has no iter

        methods += [
            ("safetensors save_file / load_file", lambda p: save_file(arrays, p), load_file),
            ("safetensors save_file / safe_open (all)", lambda p: save_file(arrays, p),
             st_open),
        ]
    return methods


def first_use(tmp: Path, arrays: dict[str, np.ndarray], repeat: int) -> None:
    """Open a file and sum one tensor: mmap=True (verify=False) vs safetensors' safe_open."""
    obj = Weights()
    obj.arrays = arrays
    save_object(obj, tmp / "first.dry", durable=False)
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("dryml load_object(mmap=True, verify=False), sum w0",
         lambda: float(load_object(tmp / "first.dry", mmap=True,
                                   verify=False).arrays["w0"].sum()))]
    if importlib.util.find_spec("safetensors") is not None:
        from safetensors import safe_open
        from safetensors.numpy import save_file

        save_file(arrays, tmp / "first.st")

        def st() -> float:
            with safe_open(tmp / "first.st", "np") as f:
                return float(f.get_tensor("w0").sum())

        cases.append(("safetensors safe_open, get_tensor(w0).sum()", st))
    else:
        print("(safetensors is not installed: its first-use row is skipped)")
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    for _ in range(repeat):
        for label, fn in cases:
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    base = statistics.median(times[cases[-1][0]])
    for label, _ in cases:
        med = statistics.median(times[label])
        print(f"| first use: {label} | {med * 1e3:.2f} ms | {med / base:.2f}x |")
    (tmp / "first.dry").unlink()
    (tmp / "first.st").unlink(missing_ok=True)


def overwrite_table(tmp: Path, arrays: dict[str, np.ndarray], repeat: int) -> None:
    """Saves over the file an earlier save left (a checkpoint saved again): ``np.save``
    truncates its file, dryml swaps a new one in (``durable=False``) or renames over it."""
    methods = [(label, save) for label, save, _ in file_methods(arrays)[:4]]
    obj = Weights()
    obj.arrays = arrays

    def renamed(p: Path) -> None:
        """As before the swap: the file system marked as one that cannot swap names."""
        from dryml.format import _stale

        device = os.stat(p.parent).st_dev
        known = device in _stale._no_swap
        _stale._no_swap.add(device)
        try:
            save_object(obj, p, durable=False)
        finally:
            if not known:
                _stale._no_swap.discard(device)

    methods.append(("dryml durable=False, renamed over it / -", renamed))
    paths = {label: tmp / f"over-{i}" for i, (label, _) in enumerate(methods)}
    times: dict[str, list[float]] = {label: [] for label, _ in methods}
    rng = random.Random(0)
    for label, save in methods:
        save(paths[label])
    for _ in range(repeat):
        rng.shuffle(methods)
        for label, save in methods:
            os.sync()
            start = time.perf_counter()
            save(paths[label])
            times[label].append(time.perf_counter() - start)
    med = {label: statistics.median(values) for label, values in times.items()}
    ref, sync = med["np.save / np.load"], med["np.save+fsync / np.load"]
    print(f"\nSaved over the file of the previous save (median of {repeat}):\n")
    print("| method | save ms | vs np.save | vs np.save+fsync |\n|---|---:|---:|---:|")
    for label, value in med.items():
        print(f"| {label.split(' / ')[0]} | {value * 1e3:.2f} | {value / ref:.2f}x | "
              f"{value / sync:.2f}x |")


def sizes_table(tmp: Path, sizes: list[int], repeat: int) -> None:
    if importlib.util.find_spec("safetensors") is None:
        print("(safetensors is not installed: pip install safetensors for its rows)")
    for size in sizes:
        arrays = _arrays(size)
        methods = file_methods(arrays)
        need = size * (len(methods) + 2)
        free = shutil.disk_usage(tmp).free
        if free < max(3 * size, need):
            print(f"\n({size // MB} MB skipped: {free / 2**30:.1f} GiB free on {tmp}, the run "
                  f"needs {need / 2**30:.1f} GiB)")
            continue
        rounds = max(3, repeat if size <= MB else 3)
        rows = run(methods, tmp, f"-{size}", repeat=rounds)
        ref_save, ref_load = rows["np.save / np.load"][:2]
        sync_save = rows["np.save+fsync / np.load"][0]
        print(f"\n## {size // MB} MB of float32 ({len(arrays)} arrays), median of {rounds}\n")
        print("| method | save ms | load ms | save vs np.save | save vs np.save+fsync | "
              "load vs np.load |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, (save, load, *_) in rows.items():
            print(f"| {label} | {save * 1e3:.2f} | {load * 1e3:.2f} | {save / ref_save:.2f}x | "
                  f"{save / sync_save:.2f}x | {load / ref_load:.2f}x |")
        if size <= MB:
            overwrite_table(tmp, arrays, rounds)
        if size >= 100 * MB:
            print()
            first_use(tmp, arrays, 5)
        for path in tmp.iterdir():
            path.unlink()
        del arrays


def xgb_table(tmp: Path, repeat: int) -> None:
    if importlib.util.find_spec("xgboost") is None:
        print("\n(xgboost is not installed: its rows are skipped)")
        return
    from bench_serializers_torch_xgb import xgb_methods

    from dryml_xgboost import _validate

    def load_checked(p: Path) -> Any:
        """load_object with the model checks run (a process loads a model once: the
        in-process memo of checked members would make every later load skip them)."""
        _validate._CHECKED = _validate._Checked()
        return load_object(p)

    import xgboost

    methods = xgb_methods()
    saves = {label: save for label, save, _ in methods}
    fast_save = saves["dryml durable=False / load_object"]
    one_row = xgboost.DMatrix(np.zeros((1, 20), dtype=np.float32))

    def native_predict(p: Path) -> Any:
        booster = xgboost.Booster()
        booster.load_model(p)
        return booster.predict(one_row)

    methods += [
        ("dryml durable=False / load_object, model checks run", fast_save, load_checked),
        # XGBoost configures a loaded booster on its first use; dryml restores the training
        # configuration at load (load_config), which does that work up front
        ("booster.save_model / load_model + predict one row", saves[
            "booster.save_model / load_model (.ubj)"], native_predict),
        ("dryml durable=False / load_object + predict one row", fast_save,
         lambda p: load_object(p).booster.predict(one_row)),
    ]
    rows = run(methods, tmp, ".ubj", repeat=repeat)
    native = rows["booster.save_model / load_model (.ubj)"]
    native_sync = rows["booster.save_model+fsync / load_model (.ubj)"]
    native_use = rows["booster.save_model / load_model + predict one row"]
    print(f"\n## XGBoost 500 trees, median of {repeat}\n")
    print("| method | save ms | load ms | size KB | save vs save_model | load vs load_model |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, (save, load, size, *_) in rows.items():
        ref = native_sync if "durable /" in label or "fsync" in label else native
        used, note = (native_use, " (vs load_model + predict)") if "predict" in label else (
            native, "")
        print(f"| {label} | {save * 1e3:.2f} | {load * 1e3:.2f} | {size / 1024:.0f} | "
              f"{save / ref[0]:.2f}x{' (vs +fsync)' if ref is native_sync else ''} | "
              f"{load / used[1]:.2f}x{note} |")
    for path in tmp.iterdir():
        path.unlink()


def repo_table(tmp: Path, objects: int, adds: int) -> None:
    from bench_repo import make, populate

    from dryml.repo import Repo

    start = time.perf_counter()
    populate(tmp, objects).close()
    print(f"\n## Repo.add_object, one call each, {objects:,}-object repository "
          f"(filled in {time.perf_counter() - start:.0f} s)\n")
    rng = random.Random(11)
    rates: dict[str, list[float]] = {"durable=False (default)": [], "durable=True": []}
    for _ in range(3):
        for label, durable in (("durable=False (default)", False), ("durable=True", True)):
            repo = Repo(tmp, durable=durable)
            new = [make(2 * i, rng)[0] for i in range(adds)]
            begin = time.perf_counter()
            for obj in new:
                repo.add_object(obj)
            rates[label].append(adds / (time.perf_counter() - begin))
            repo.close()
    print(f"| mode | adds/s (median of 3 x {adds}) | target |\n|---|---:|---:|")
    for label, values in rates.items():
        print(f"| {label} | {statistics.median(values):,.0f} | "
              f"{'>= 3,000/s' if 'default' in label else '-'} |")


def cold_table() -> None:
    if importlib.util.find_spec("tensorflow") is None:
        print("\n(tensorflow is not installed: the cold-start row is skipped)")
        return
    from bench_context import bench_cold

    cold, bare, diff = bench_cold("tf", "tensorflow", reps=3)
    print("\n## TensorFlow worker cold start (3 pairs)\n")
    print(f"| worker cold start | {cold:.2f} s |\n| bare import tensorflow | {bare:.2f} s |\n"
          f"| difference (median of pairs) | {diff:+.2f} s (target <= +0.3 s) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--huge", action="store_true", help="add the 4 GB case")
    parser.add_argument("--repo-objects", type=int, default=100_000)
    parser.add_argument("--adds", type=int, default=1000)
    parser.add_argument("--quick", action="store_true",
                        help="1 MB and 100 MB only, a 10,000-object repository, no cold start")
    parser.add_argument("--only", choices=["files", "xgb", "repo", "cold"], action="append")
    parser.add_argument("--sizes", help="file sizes in MB, comma-separated (e.g. 1,1024): "
                        "instead of 1, 100, 1024 (and 4096 with --huge)")
    opts = parser.parse_args()
    sizes = [MB, 100 * MB] + ([] if opts.quick else [1024 * MB]) + (
        [4096 * MB] if opts.huge else [])
    if opts.sizes:
        sizes = [int(s) * MB for s in opts.sizes.split(",")]
    parts = opts.only or ["files", "xgb", "repo", "cold"]
    with tempfile.TemporaryDirectory(dir=os.environ.get("DRYML_BENCH_DIR")) as tmp:
        if "files" in parts:
            sizes_table(Path(tmp), sizes, repeat=15)
        if "xgb" in parts:
            xgb_table(Path(tmp), repeat=15)
    if "repo" in parts:
        with tempfile.TemporaryDirectory(dir=os.environ.get("DRYML_BENCH_DIR")) as tmp:
            repo_table(Path(tmp), 10_000 if opts.quick else opts.repo_objects, opts.adds)
    if "cold" in parts and not opts.quick:
        cold_table()


if __name__ == "__main__":
    main()
