"""TorchTrainable's training loop against hand-written torch loops, side by side.

The same MLP (64 -> 128 -> 10, Adam), the same data (20,000 x 64 float32, 10 classes) and the
same epochs and batch size, all timed inside one torch worker (one CPU thread, as a default
torch context grants):

* ``DataLoader``: the textbook loop, ``DataLoader(TensorDataset(x, y), shuffle=True)``;
* ``randperm``: a hand-written loop that indexes the tensors with a shuffled permutation;
* ``TorchTrainable.train``: dryml's loop (seeded per-epoch shuffle, loss history, progress
  bar), with and without a 10 % validation split (validation is extra work per epoch);
* the full ``model.train`` call from the calling process: dispatch to the warm worker, the
  data sent over, the trained state sent back.

Ratios are against ``randperm``. Run: ``python benchmarks/bench_models_torch.py`` (~1 min).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np

from dryml.context import compute_context
from dryml.data import NumpyDataset
from dryml.models import TrainSpec
from dryml_torch.models import Loss, Optimizer, Sequential, TorchTrainable

N, FEATURES, CLASSES, EPOCHS, BATCH, REPEATS = 20_000, 64, 10, 3, 64, 3
LAYERS = [("Linear", {"in_features": FEATURES, "out_features": 128}), ("ReLU", {}),
          ("Linear", {"in_features": 128, "out_features": CLASSES})]


def data() -> NumpyDataset:
    rng = np.random.default_rng(0)
    y = rng.integers(0, CLASSES, N)
    x = (rng.normal(size=(N, FEATURES)) + np.eye(CLASSES, FEATURES)[y] * 3).astype(np.float32)
    return NumpyDataset((x, y), supervised=True)


def model(validation_split: float = 0.0) -> TorchTrainable:
    return TorchTrainable(Sequential(LAYERS), Optimizer("Adam", lr=1e-3),
                          Loss("CrossEntropyLoss"),
                          TrainSpec(epochs=EPOCHS, batch_size=BATCH,
                                    validation_split=validation_split, seed=0))


def _plain(x: Any, y: Any, loader: bool) -> float:
    import torch

    torch.manual_seed(0)
    net = Sequential(LAYERS).build()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(EPOCHS):
        if loader:
            batches: Any = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(x, y), batch_size=BATCH, shuffle=True)
        else:
            order = torch.randperm(len(x))
            batches = ((x[order[i:i + BATCH]], y[order[i:i + BATCH]])
                       for i in range(0, len(x), BATCH))
        for xb, yb in batches:
            opt.zero_grad()
            loss_fn(net(xb), yb).backward()
            opt.step()
    return time.perf_counter() - start


@compute_context({"torch": {}})
def in_worker(ds: NumpyDataset) -> dict[str, list[float]]:
    """Every in-worker variant, interleaved, ``REPEATS`` times."""
    import torch

    x, y = (torch.from_numpy(a) for a in ds.peek())
    times: dict[str, list[float]] = {}
    for _ in range(REPEATS):
        times.setdefault("DataLoader", []).append(_plain(x, y, loader=True))
        times.setdefault("randperm", []).append(_plain(x, y, loader=False))
        for name, split in (("TorchTrainable.train", 0.0),
                            ("TorchTrainable.train + 10% validation", 0.1)):
            m = model(split)
            start = time.perf_counter()
            m.train(ds)
            times.setdefault(name, []).append(time.perf_counter() - start)
    return times


def main() -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")
    ds = data()
    times = in_worker(ds)
    remote = []
    for _ in range(REPEATS):
        m = model()
        start = time.perf_counter()
        m.train(ds)
        remote.append(time.perf_counter() - start)
    times["model.train from the caller (warm worker)"] = remote
    base = statistics.median(times["randperm"])
    print(f"{N} x {FEATURES} float32, {EPOCHS} epochs of batch {BATCH}, median of {REPEATS}")
    print(f"{'loop':<44}{'seconds':>9}{'ratio':>8}")
    for name, values in times.items():
        t = statistics.median(values)
        print(f"{name:<44}{t:>9.3f}{t / base:>7.2f}x")


if __name__ == "__main__":
    main()
