"""Compute-context call overhead and worker cold start, side by side.

Rows: a trivial decorated call with a small Object argument on a warm worker, against
``multiprocessing.Pool.apply`` of the same function and against a new spawned process per call
(the original dryml design); then the cold start of a torch and a tf worker against a bare
``python -c "import torch"`` / ``import tensorflow`` (timed to the end of the import, without
the interpreter's teardown, since a worker's cold start ends when it is ready). Targets: warm
call median < 2 ms; cold start within the framework's import time + 0.3 s.

Run: ``python benchmarks/bench_context.py`` (about a minute and a half; frameworks that are not
installed are skipped).
"""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import dryml.context as ctx
from dryml import Object


class Small(Object):
    """A small Object: two arguments."""

    def __init__(self, x: int, name: str = "small") -> None:
        self.x = x


def trivial(obj: Small) -> int:
    return obj.x + 1


warm_trivial = ctx.compute_context({"default": {}})(trivial)


def _spawned(queue: Any, obj: Small) -> None:
    queue.put(trivial(obj))


def _times(fn: Callable[[], Any], n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _new_process_call(obj: Small) -> int:
    context = mp.get_context("spawn")
    queue = context.Queue()
    proc = context.Process(target=_spawned, args=(queue, obj))
    proc.start()
    result = queue.get()
    proc.join()
    return int(result)


def bench_calls() -> list[tuple[str, float]]:
    obj = Small(3)
    rows = [("warm worker: decorated call", statistics.median(
        _times(lambda: warm_trivial(obj), 500)))]
    with mp.get_context("spawn").Pool(1) as pool:
        rows.append(("multiprocessing.Pool.apply (spawn pool)", statistics.median(
            _times(lambda: pool.apply(trivial, (obj,)), 500))))
    with mp.get_context("fork").Pool(1) as pool:
        rows.append(("multiprocessing.Pool.apply (fork pool)", statistics.median(
            _times(lambda: pool.apply(trivial, (obj,)), 500))))
    rows.append(("new spawned process per call (original)", statistics.median(
        _times(lambda: _new_process_call(obj), 8, warmup=1))))
    return rows


def _bare_import(module: str) -> float:
    # os._exit: stop the clock when the import is done, as a worker's "ready" does; a plain
    # `python -c "import torch"` also pays the interpreter's teardown, which flatters us.
    start = time.perf_counter()
    imports = f"import {module}; " if module else ""
    subprocess.run([sys.executable, "-c", f"{imports}import os; os._exit(0)"],
                   check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _cold_start(framework: str) -> float:
    ctx.shutdown_workers()

    @ctx.compute_context({framework: {}})
    def nothing() -> None:
        return None

    start = time.perf_counter()
    nothing()
    took = time.perf_counter() - start
    ctx.shutdown_workers()
    return took


def bench_cold(framework: str, module: str, reps: int = 5) -> tuple[float, float, float]:
    """Best-of-``reps`` cold start of a worker and of a bare ``python -c "import module"``, and
    the median of the paired differences (each pair run back to back, so that other load on
    a shared machine hits both alike)."""
    bare, cold = [], []
    for _ in range(reps):
        bare.append(_bare_import(module))
        cold.append(_cold_start(framework))
    return min(cold), min(bare), statistics.median(c - b for c, b in zip(cold, bare, strict=True))


def main() -> None:
    print("dryml.context benchmark (medians of repeated calls; cold starts: best of 5, and "
          "the median difference of 5 back-to-back pairs)\n")
    rows = bench_calls()
    base = rows[0][1]
    print(f"{'call with a small Object argument':44} {'median':>10} {'vs warm':>9}")
    for name, secs in rows:
        print(f"{name:44} {secs * 1e3:8.3f}ms {secs / base:8.1f}x")
    target = "met" if base < 0.002 else "MISSED"
    print(f"target: warm call median < 2 ms: {target}\n")
    print(f"{'cold start':10} {'worker':>9} {'bare python':>12} {'difference':>11} "
          f"{'target (+0.3s)':>15}")
    # 'default' imports no framework: its row is dryml's own start-up cost, without the noise
    # of a multi-second framework import.
    for framework, module in (("default", ""), ("torch", "torch"), ("tf", "tensorflow")):
        if module and importlib.util.find_spec(module) is None:
            print(f"{framework:10} {'(not installed)':>9}")
            continue
        cold, bare, diff = bench_cold(framework, module)
        verdict = "met" if diff <= 0.3 else "MISSED"
        print(f"{framework:10} {cold:8.2f}s {bare:11.2f}s {diff:+10.2f}s {verdict:>15}")
    ctx.shutdown_workers()


if __name__ == "__main__":
    main()
