"""Benchmark: a Repo of 100,000 small objects against a naive scan of the .dry files.

Measured (medians): opening the repository; a query by class and one kwarg; a query by a
metadata range with ``order_by`` and ``limit``; adding 10,000 objects one ``add_object`` at a
time (and with ``add_objects``). Side by side, the naive approach: every query opens each
``.dry`` file of the directory and reads its manifest (no index), as the original dryml did
(it unpickled whole files, which is slower still). The naive scan is timed on a sample of the
files and extrapolated linearly to all of them (it reads one manifest per file, so its cost is
linear); ``--naive-sample 0`` scans every file.

Run: ``python benchmarks/bench_repo.py [--objects 100000] [--adds 10000]`` (or ``nox -s bench``).
Targets (issue 4, on a 2-core machine): open < 1 s, each query < 50 ms, >= 1,000 adds/s, and
queries >= 100x faster than the naive scan.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dryml import Object
from dryml.format import read_manifest
from dryml.repo import Range, Repo, Selector


class Component(Object):
    """A small object, as a hyperparameter search makes by the thousand."""

    def __init__(self, width: int, seed: int = 0, lr: float = 0.1, score: float = 0.0) -> None:
        self.width, self.seed = width, seed


class Model(Component):
    """A subclass: class queries must match it through the MRO."""


class Scaler(Object):
    """Another class in the same repository."""

    def __init__(self, seed: int) -> None:
        self.seed = seed


def make(i: int, rng: random.Random) -> tuple[Object, dict[str, Any]]:
    score = round(rng.random(), 6)
    if i % 2:
        return Scaler(i % 5000), {}
    cls = Model if i % 4 == 0 else Component
    obj = cls(64, seed=i % 5000, lr=rng.choice([0.1, 0.01, 0.001]), score=score)
    return obj, {"metrics": {"accuracy": score}, "epoch": i % 10}


def median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    return timed(fn, repeat)[1:]


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(first run, median of all runs, result) in seconds."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times), result


def populate(directory: Path, count: int) -> Repo:
    repo = Repo(directory, create=True)
    rng = random.Random(0)
    start = time.perf_counter()
    for base in range(0, count, 1000):
        batch = [make(i, rng) for i in range(base, min(count, base + 1000))]
        repo.add_objects([o for o, _ in batch], metadata=[m for _, m in batch])
    print(f"populated {count} objects in {time.perf_counter() - start:.1f} s "
          f"(add_objects in batches of 1000)")
    return repo


def naive_files(directory: Path, sample: int) -> tuple[list[Path], float]:
    files = sorted(directory.glob("*.dry"))
    if sample and sample < len(files):
        return random.Random(1).sample(files, sample), len(files) / sample
    return files, 1.0


def naive_class_kwarg(files: list[Path], classes: set[str], seed: int) -> list[str]:
    found = []
    for path in files:
        manifest = read_manifest(path)
        root = next(n for n in manifest.objects if n.id == manifest.root)
        if root.cls in classes and root.kwargs.get("seed") == seed:
            found.append(root.id)
    return found


def naive_score_range(files: list[Path], classes: set[str], lo: float, hi: float,
                      limit: int) -> list[str]:
    found = []
    for path in files:
        manifest = read_manifest(path)
        root = next(n for n in manifest.objects if n.id == manifest.root)
        score = root.kwargs.get("score")
        if root.cls in classes and isinstance(score, float) and lo <= score <= hi:
            found.append((score, root.id))
    return [i for _, i in sorted(found, reverse=True)[:limit]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--adds", type=int, default=10_000)
    parser.add_argument("--naive-sample", type=int, default=5_000,
                        help="files the naive scan reads (0: all); extrapolated to all")
    parser.add_argument("--dir", help="where to build the repository (default: a temp dir)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=opts.dir) as tmp:
        directory = Path(tmp) / "repo"
        populate(directory, opts.objects).close()

        open_s, repo = median_time(lambda: Repo(directory), 5)
        q1_first, q1_s, q1 = timed(lambda: repo.get(Selector(Component, kwargs={"seed": 1234})),
                                   21)
        q2_first, q2_s, q2 = timed(lambda: repo.get(
            Selector(Component), where={"metrics.accuracy": Range(0.5, 0.6)},
            order_by="metrics.accuracy", descending=True, limit=10), 21)

        files, scale = naive_files(directory, opts.naive_sample)
        classes = {f"{__name__}:Component", f"{__name__}:Model"}
        n1_s, n1 = median_time(lambda: naive_class_kwarg(files, classes, 1234), 1)
        n2_s, n2 = median_time(lambda: naive_score_range(files, classes, 0.5, 0.6, 10), 1)
        n1_s, n2_s = n1_s * scale, n2_s * scale
        if scale == 1.0:  # the same answers, when the naive scan saw every file
            assert sorted(n1) == sorted(o.dry_id for o in q1)
            assert n2 == [o.dry_id for o in q2]

        rng = random.Random(7)
        new = [make(2 * i, rng)[0] for i in range(opts.adds)]
        start, cpu = time.perf_counter(), time.process_time()
        for obj in new:
            repo.add_object(obj)
        add_rate = opts.adds / (time.perf_counter() - start)
        add_cpu_rate = opts.adds / (time.process_time() - cpu)
        batch = [make(2 * i, rng)[0] for i in range(opts.adds)]
        start = time.perf_counter()
        repo.add_objects(batch)
        batch_rate = opts.adds / (time.perf_counter() - start)
        total = len(repo)

    note = "" if scale == 1.0 else f" (sampled {len(files)} files, x{scale:.0f})"
    rows = [
        ("open the repository", f"{open_s * 1e3:.1f} ms", "-", "-", "< 1 s"),
        (f"class + kwarg query ({len(q1)} found)",
         f"{q1_s * 1e3:.2f} ms (first {q1_first * 1e3:.1f})", f"{n1_s:.1f} s{note}",
         f"{n1_s / q1_first:,.0f}x", "< 50 ms, >= 100x"),
        (f"metadata range + order_by + limit ({len(q2)})",
         f"{q2_s * 1e3:.2f} ms (first {q2_first * 1e3:.1f})", f"{n2_s:.1f} s{note}",
         f"{n2_s / q2_first:,.0f}x", "< 50 ms, >= 100x"),
        (f"{opts.adds} add_object calls", f"{add_rate:,.0f} adds/s", "-", "-", ">= 1,000/s"),
        ("  the same, CPU time of this process", f"{add_cpu_rate:,.0f} adds/s", "-", "-", "-"),
        (f"add_objects({opts.adds})", f"{batch_rate:,.0f} adds/s", "-", "-", "-"),
    ]
    headers = ("operation", "repo: median (first run)", "naive scan", "speedup (first)",
               "target")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(5)]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{opts.objects:,} objects in the repository ({total:,} after the adds); "
          f"{os.cpu_count()} CPUs, load average {load} (other work slows the wall times)\n")
    for row in [headers, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


if __name__ == "__main__":
    main()
