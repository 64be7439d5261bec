"""TensorFlow and PyTorch side by side: two workers at once, data flowing between them."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backend_checks import require_backend

import dryml.context as ctx
from dryml.context import FakeCpuProvider, FakeGpuProvider, compute_context


@pytest.fixture(scope="module", autouse=True)
def fake_machine() -> Iterator[None]:
    require_backend("tf")
    require_backend("torch")
    ctx.configure(providers=[FakeCpuProvider(4), FakeGpuProvider(1)], max_workers=4)
    yield
    ctx.configure()


def _meet(mine: Path, theirs: Path) -> None:
    """Announce ``mine`` and wait for ``theirs``: both calls are running at the same time."""
    mine.write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not theirs.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{theirs} never appeared: the other call is not running")
        time.sleep(0.01)


TF = {"tf": {"gpu/0": 0.5, "cpu/0": 1.0}}
TORCH = {"torch": {"gpu/0": 0.5, "cpu/1": 1.0}}


@compute_context(TF)
def tf_side(mine: str, theirs: str) -> tuple[int, list[str]]:
    import sys

    import tensorflow as tf

    _meet(Path(mine), Path(theirs))
    assert float(tf.reduce_sum(tf.ones(3))) == 3.0
    return os.getpid(), sorted(m for m in ("torch", "tensorflow") if m in sys.modules)


@compute_context(TORCH)
def torch_side(mine: str, theirs: str) -> tuple[int, list[str]]:
    import sys

    import torch

    _meet(Path(mine), Path(theirs))
    assert float(torch.ones(3).sum()) == 3.0
    return os.getpid(), sorted(m for m in ("torch", "tensorflow") if m in sys.modules)


def test_a_tf_call_and_a_torch_call_run_at_the_same_time_in_different_workers(
        tmp_path: Path) -> None:
    a, b = tmp_path / "tf", tmp_path / "torch"
    results: dict[str, Any] = {}
    threads = [
        threading.Thread(target=lambda: results.update(tf=tf_side(str(a), str(b)))),
        threading.Thread(target=lambda: results.update(torch=torch_side(str(b), str(a)))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {"tf", "torch"}
    (tf_pid, tf_mods), (torch_pid, torch_mods) = results["tf"], results["torch"]
    assert tf_pid != torch_pid
    assert tf_mods == ["tensorflow"] and torch_mods == ["torch"]  # one framework each


@compute_context(TORCH)
def torch_batches(n: int) -> list[np.ndarray]:
    import torch

    data = torch.utils.data.TensorDataset(torch.arange(n * 2, dtype=torch.float32).reshape(n, 2))
    return [batch.numpy() for (batch,) in torch.utils.data.DataLoader(data, batch_size=4)]


@compute_context(TF)
def tf_fit(batches: list[np.ndarray]) -> float:
    import tensorflow as tf

    x = np.concatenate(batches)
    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    model.compile(loss="mse", optimizer="sgd")
    history = model.fit(x, x.sum(axis=1, keepdims=True) / 10, epochs=2, verbose=0)
    return float(history.history["loss"][-1])


def test_a_torch_data_pipeline_feeds_a_tf_model() -> None:
    batches = torch_batches(10)
    assert sum(len(b) for b in batches) == 10
    assert np.isfinite(tf_fit(batches))


@compute_context({"tf": {"gpu/0": 0.5}, "torch": {"gpu/0": 0.5}})
def both_frameworks() -> dict[str, Any]:
    current = ctx.current_context()
    assert current is not None
    ctx.context_check({"tf": {"gpu/0": 0.5}})
    ctx.context_check({"torch": {"gpu/0": 0.5}})
    return {"frameworks": current.frameworks, "tf": current.local_gpus("tf"),
            "torch": current.local_gpus("torch")}


def test_one_requirement_naming_both_frameworks_gets_one_worker_with_each_share() -> None:
    facts = both_frameworks()  # the idle side-by-side workers hold gpu/0: they are stopped
    assert facts["frameworks"] == ("tf", "torch")
    assert [g["fraction"] for g in facts["tf"]] == [0.5]
    assert [g["fraction"] for g in facts["torch"]] == [0.5]
