"""Benchmark: .dry save/load of 100 MB of float32 vs np.save/np.load, pickle 5, torch.save.

Also: Object construction overhead against a plain class, and `import dryml` time.
Everything runs side by side in one process run; the table reports medians and ratios.
Run: ``python benchmarks/bench_format.py`` (or ``nox -s bench``).
"""

from __future__ import annotations

import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dryml import Object, load_object, save_object

REPEAT = 9
MB = 2**20


class Weights(Object):
    """An Object holding its arrays as state."""

    def __init__(self, n_arrays: int) -> None:
        self.arrays: list[np.ndarray] = []

    def save_object_imp(self, store: Any) -> None:
        for i, array in enumerate(self.arrays):
            store.put(f"w{i}", array)

    def load_object_imp(self, store: Any) -> None:
        self.arrays = [store.get(name) for name in store.names()]


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def bench_files(tmp: Path) -> list[tuple[str, float, float, int]]:
    """Each save writes a fresh path (old files are deleted outside the timed region):
    replacing or truncating a 100 MB file costs the filesystem 5-50 ms, which would otherwise
    be charged to whichever method happens to overwrite."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(25 * MB // 4, dtype=np.float32) for _ in range(4)]  # 100 MB
    obj = Weights(4)
    obj.arrays = arrays

    def np_save(path: Path) -> None:
        with open(path, "wb") as f:
            for array in arrays:
                np.save(f, array)

    def np_load(path: Path) -> None:
        with open(path, "rb") as f:
            [np.load(f) for _ in arrays]

    def np_save_fsync(path: Path) -> None:
        np_save(path)
        fsync_path(path)

    def pk_save(path: Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(arrays, f, protocol=5)

    def pk_load(path: Path) -> None:
        with open(path, "rb") as f:
            pickle.load(f)

    cases: list[tuple[str, Callable[[Path], Any], Callable[[Path], Any]]] = [
        ("np.save / np.load", np_save, np_load),
        ("np.save+fsync / np.load", np_save_fsync, np_load),
        ("pickle protocol 5", pk_save, pk_load),
        ("dryml .dry (atomic: fsync+rename)", lambda p: save_object(obj, p), load_object),
        ("dryml .dry durable=False (rename only)",
         lambda p: save_object(obj, p, durable=False), load_object),
    ]
    try:
        import torch

        tensors = {f"w{i}": torch.from_numpy(a) for i, a in enumerate(arrays)}
        cases.append(("torch.save / torch.load", lambda p: torch.save(tensors, p), torch.load))
    except ImportError:
        pass
    # Round-robin: every round runs every method once, so noise from a shared machine falls
    # on all of them alike; the table takes medians over rounds. Saves go to fresh paths and
    # the previous round's file is deleted outside the timed region, keeping the page cache
    # small; loads read one synced file per method from the page cache.
    save_times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    load_times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    for i in range(REPEAT):
        for j, (label, save, _) in enumerate(cases):
            os.sync()
            start = timeit.default_timer()
            save(tmp / f"f{j}-{i}")
            save_times[label].append(timeit.default_timer() - start)
            if i:
                (tmp / f"f{j}-{i - 1}").unlink()
    last = REPEAT - 1
    for j, (_, _, load) in enumerate(cases):  # flush and warm: loads read the page cache
        fsync_path(tmp / f"f{j}-{last}")
        load(tmp / f"f{j}-{last}")
    for _ in range(REPEAT):
        for j, (label, _, load) in enumerate(cases):
            start = timeit.default_timer()
            load(tmp / f"f{j}-{last}")
            load_times[label].append(timeit.default_timer() - start)
    rows = []
    for j, (label, _, _) in enumerate(cases):
        size = (tmp / f"f{j}-{last}").stat().st_size
        rows.append((label, statistics.median(save_times[label]),
                     statistics.median(load_times[label]), size))
    save_object(obj, tmp / "check.dry")
    loaded = load_object(tmp / "check.dry")
    assert all(np.array_equal(a, b) for a, b in zip(loaded.arrays, arrays, strict=True))
    return rows


class Plain:
    def __init__(self, a: Any, b: Any = 2, *, name: str = "x") -> None:
        self.a, self.b, self.name = a, b, name


class Dry(Object):
    def __init__(self, a: Any, b: Any = 2, *, name: str = "x") -> None:
        self.a, self.b, self.name = a, b, name


def bench_construction() -> tuple[float, float]:
    n = 100_000
    plain = min(timeit.repeat(lambda: Plain(1, [1, 2], name="y"), number=n, repeat=5)) / n
    dry = min(timeit.repeat(lambda: Dry(1, [1, 2], name="y"), number=n, repeat=5)) / n
    return plain, dry


def bench_import() -> tuple[float, float]:
    def run(code: str) -> float:
        start = timeit.default_timer()
        subprocess.run([sys.executable, "-c", code], check=True)
        return timeit.default_timer() - start

    base = statistics.median(run("pass") for _ in range(7))
    full = statistics.median(run("import dryml") for _ in range(7))
    return base, full


def main() -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("DRYML_BENCH_DIR")) as tmp:
        rows = bench_files(Path(tmp))
    ref_save, ref_load = rows[0][1], rows[0][2]
    print("\n## .dry save/load of an Object holding 100 MB of float32 (median of "
          f"{REPEAT})\n")
    print("| method | save ms | load ms | size MB | save vs np.save | load vs np.load |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, save, load, size in rows:
        print(f"| {label} | {save * 1e3:.1f} | {load * 1e3:.1f} | {size / MB:.1f} | "
              f"{save / ref_save:.2f}x | {load / ref_load:.2f}x |")
    by_label = {r[0]: r for r in rows}
    dry_fsync, np_fsync = by_label["dryml .dry (atomic: fsync+rename)"], by_label[
        "np.save+fsync / np.load"]
    print(f"\ndryml save vs np.save+fsync (both durable): {dry_fsync[1] / np_fsync[1]:.2f}x")
    if "torch.save / torch.load" in by_label:
        pt = by_label["torch.save / torch.load"]
        fast = by_label["dryml .dry durable=False (rename only)"]
        print(f"\nspeed-up over torch.save / torch.load (torch.save does not fsync): "
              f"save {pt[1] / dry_fsync[1]:.2f}x durable, {pt[1] / fast[1]:.2f}x with "
              f"durable=False; load {pt[2] / dry_fsync[2]:.2f}x")
    plain, dry_ctor = bench_construction()
    print("\n## Object construction\n")
    print("| class | µs per construction |\n|---|---:|")
    print(f"| plain class | {plain * 1e6:.2f} |\n| dryml Object | {dry_ctor * 1e6:.2f} |")
    print(f"\noverhead: {(dry_ctor - plain) * 1e6:.2f} µs (target < 10 µs)")
    base, full = bench_import()
    print("\n## import time (median of 7 fresh interpreters)\n")
    print(f"| python -c pass | {base * 1e3:.0f} ms |\n| python -c 'import dryml' | "
          f"{full * 1e3:.0f} ms |")
    print(f"\n`import dryml` costs {(full - base) * 1e3:.0f} ms (target < 300 ms)")


if __name__ == "__main__":
    main()
