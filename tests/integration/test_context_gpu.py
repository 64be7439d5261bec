"""On a machine with a real GPU: TF and torch workers sharing one GPU each stay under their cap.

Skipped where NVML reports no GPU (every CI runner here): the fake-GPU tests cover scheduling;
this checks that the caps the backends set really hold on hardware. Each worker allocates in
256 MiB blocks until its framework refuses, at the same time as the other, and reports how much
it got; NVML's view of each worker process is checked too where its pids are visible.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backend_checks import require_backend

import dryml.context as ctx
from dryml.context import NvmlProvider, compute_context

BLOCK = 256 << 20
SHARE = 0.4  # of gpu/0 for each framework (the rest: CUDA contexts and other tenants)


@pytest.fixture(scope="module", autouse=True)
def real_gpu() -> Iterator[None]:
    if not NvmlProvider().resources():
        pytest.skip("no GPU visible through NVML")
    require_backend("torch")
    require_backend("tf")
    ctx.configure()
    yield
    ctx.configure()


def _meet(mine: Path, theirs: Path) -> None:
    import time

    mine.write_text(str(os.getpid()))
    deadline = time.monotonic() + 300
    while not theirs.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@compute_context({"torch": {"gpu/0": SHARE}})
def torch_fill(mine: str, theirs: str) -> dict[str, Any]:
    import torch

    blocks = []
    try:
        while True:
            blocks.append(torch.empty(BLOCK, dtype=torch.uint8, device="cuda:0"))
    except torch.cuda.OutOfMemoryError:
        pass
    total = torch.cuda.get_device_properties(0).total_memory
    _meet(Path(mine), Path(theirs))  # hold the memory until the other side is full too
    return {"pid": os.getpid(), "got": len(blocks) * BLOCK, "total": total,
            "devices": torch.cuda.device_count()}


@compute_context({"tf": {"gpu/0": SHARE}})
def tf_fill(mine: str, theirs: str) -> dict[str, Any]:
    import tensorflow as tf

    tensors = []
    try:
        with tf.device("/GPU:0"):
            while True:
                tensors.append(tf.zeros((BLOCK // 4,), dtype=tf.float32))
    except tf.errors.ResourceExhaustedError:
        pass
    _meet(Path(mine), Path(theirs))
    return {"pid": os.getpid(), "got": len(tensors) * BLOCK,
            "devices": len(tf.config.list_logical_devices("GPU"))}


def _nvml_used(pids: list[int]) -> dict[int, int]:
    import pynvml

    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(
            NvmlProvider().resources()[0].info["nvml_index"])
        return {p.pid: int(p.usedGpuMemory or 0)
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid in pids}
    finally:
        pynvml.nvmlShutdown()


def test_tf_and_torch_sharing_a_gpu_each_stay_under_their_cap(tmp_path: Path) -> None:
    a, b = tmp_path / "torch", tmp_path / "tf"
    out: dict[str, Any] = {}
    threads = [threading.Thread(target=lambda: out.update(torch=torch_fill(str(a), str(b)))),
               threading.Thread(target=lambda: out.update(tf=tf_fill(str(b), str(a))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = out["torch"]["total"]
    cap = SHARE * total
    print(f"GPU total {total / 2**30:.1f} GiB, cap {cap / 2**30:.1f} GiB each: torch got "
          f"{out['torch']['got'] / 2**30:.2f} GiB, tf got {out['tf']['got'] / 2**30:.2f} GiB")
    assert out["torch"]["devices"] == 1 and out["tf"]["devices"] == 1
    for side in ("torch", "tf"):
        assert out[side]["got"] <= cap + BLOCK
        assert out[side]["got"] >= cap - 4 * BLOCK  # the cap is the limit, not something less
    used = _nvml_used([out["torch"]["pid"], out["tf"]["pid"]])
    for pid, amount in used.items():  # empty where the container hides worker pids from NVML
        assert amount <= cap + (1 << 30), f"worker {pid} used {amount / 2**30:.2f} GiB"
