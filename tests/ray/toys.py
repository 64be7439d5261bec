"""Objects and functions the Ray tests send to actors (importable there by module name)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

import dryml.context as dc
from dryml import Object
from dryml.data import NumpyDataset
from dryml.models import Trainable, supervised_arrays

WAIT = 300.0  # seconds a call waits for the others it expects to run beside it (loaded CI)


class Counter(Object):
    """Counts the calls it went through (its state comes back with update_objs)."""

    dry_mut = True

    def __init__(self, start: int = 0) -> None:
        self.count = start

    def save_object_imp(self, store: Any) -> None:
        store.put("count", self.count)

    def load_object_imp(self, store: Any) -> None:
        self.count = store.get("count")


@dc.compute_context({"default": {}}, update_objs=True)
def bump(counter: Counter) -> int:
    counter.count += 1
    return os.getpid()


def node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


@dc.compute_context({"default": {}})
def meet(folder: str, expected: int) -> str:
    """Wait (in the actor) until ``expected`` calls are running at once; the node's id."""
    Path(folder, uuid.uuid4().hex).touch()
    deadline = time.monotonic() + WAIT
    while len(os.listdir(folder)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return node_id()


@dc.compute_context({"default": {"num_gpus": 0.5, "cpu/0": 0.1}})
def half_gpu(folder: str, full: int) -> dict[str, Any]:
    """Hold half of any one GPU (a fractional ``num_gpus``) until ``full`` calls have run at
    once; what this call saw meanwhile."""
    return _hold_half_gpu("default", folder, full)


@dc.compute_context({"torch": {"num_gpus": 0.5, "cpu/0": 0.1}})
def half_gpu_torch(folder: str, full: int) -> dict[str, Any]:
    """:func:`half_gpu` in a context prepared for torch (its ``dryml_contexts`` hook ran)."""
    return _hold_half_gpu("torch", folder, full)


def _hold_half_gpu(framework: str, folder: str, full: int) -> dict[str, Any]:
    import ray

    gpu = ",".join(str(g) for g in ray.get_gpu_ids())
    dc.context_check({framework: {"num_gpus": 0.5}})
    mine = Path(folder, f"{gpu}-{uuid.uuid4().hex}")
    mine.touch()
    flag = Path(folder).parent / (Path(folder).name + ".full")
    most_here = most_total = 0
    deadline = time.monotonic() + WAIT
    linger: float | None = None
    while time.monotonic() < deadline:
        names = os.listdir(folder)
        most_here = max(most_here, sum(n.split("-")[0] == gpu for n in names))
        most_total = max(most_total, len(names))
        if len(names) >= full:
            flag.touch()
        if flag.exists():
            linger = linger or time.monotonic() + 1.0
            if time.monotonic() > linger:
                break
        time.sleep(0.02)
    mine.unlink()
    return {"gpu": gpu, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "most_here": most_here,
            "most_total": most_total, "full": flag.exists()}


@dc.compute_context({"default": {}})
def hang(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(300)


@dc.compute_context({"default": {"cpu/0": 0.25}})
def pid() -> int:
    """The actor's pid (a CPU-only context that holds no GPU)."""
    return os.getpid()


@dc.compute_context({"default": {"num_gpus": 2, "cpu/0": 0.25}})
def hold_gpus(folder: str) -> int:
    """Hold both of the head's GPUs until ``folder/go`` exists (``folder/running`` says it
    runs)."""
    Path(folder, "running").touch()
    deadline = time.monotonic() + WAIT
    while not Path(folder, "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.getpid()


@dc.compute_context({"default": {"num_gpus": 1, "cpu/0": 0.1}})
def one_gpu() -> int:
    return os.getpid()


@dc.compute_context({"default": {"cpu/0": 0.5}})
def outer() -> tuple[int, dict[str, Any]]:
    """Runs a call this context cannot (it wants a GPU): a nested call from the actor."""
    return os.getpid(), inner()


@dc.compute_context({"default": {"gpu/0": 0.5, "cpu/0": 0.25}})
def inner() -> dict[str, Any]:
    import ray

    dc.context_check({"default": {"gpu/0": 0.5}})
    return {"pid": os.getpid(), "gpus": [str(g) for g in ray.get_gpu_ids()]}


@dc.compute_context({"default": {}})
def fails() -> None:
    raise ValueError("this call fails in its actor")


class Toy(Trainable):
    """Nearest class mean, moved by ``shift``; ``pause`` makes a trial last long enough;
    ``epochs`` > 1 reports each epoch (``val_accuracy`` = -shift) for a search's pruner."""

    def __init__(self, shift: float = 0.0, pause: float = 0.0, epochs: int = 1) -> None:
        self.shift, self.pause, self.epochs = shift, pause, epochs
        self.centers: Any = None

    def fit(self, data: Any, valid: Any) -> None:
        time.sleep(self.pause)
        x, y = supervised_arrays(data)
        self.centers = np.stack([x[y == c].mean(axis=0) for c in np.unique(y)]) + self.shift
        for epoch in range(1, self.epochs + 1):
            self.train_state.history.append({"epoch": epoch, "val_accuracy": -self.shift})
            self.on_epoch_end(dict(self.train_state.history[-1]))

    def on_epoch_end(self, logs: dict[str, float]) -> None:
        """Nothing to do (the search wraps it to report epochs)."""

    def predict(self, x: Any) -> Any:
        d = -((np.asarray(x)[:, None, :] - self.centers[None]) ** 2).sum(-1)
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def save_object_imp(self, store: Any) -> None:
        if self.centers is not None:
            store.put("centers", self.centers)

    def load_object_imp(self, store: Any) -> None:
        self.centers = store.get("centers", None)



class ValidToy(Toy):
    """A Toy whose epochs log ``val_accuracy`` only when train() is given validation data, as
    torch and Keras Trainables do (and no ``accuracy``: the metric is scored after training)."""

    def fit(self, data: Any, valid: Any) -> None:
        x, y = supervised_arrays(data)
        self.centers = np.stack([x[y == c].mean(axis=0) for c in np.unique(y)]) + self.shift
        for epoch in range(1, self.epochs + 1):
            logs: dict[str, float] = {"epoch": epoch, "loss": self.shift}
            if valid is not None:
                xv, yv = supervised_arrays(valid)
                logs["val_accuracy"] = float((self.predict(xv).argmax(1) == yv).mean())
            self.train_state.history.append(logs)
            self.on_epoch_end(dict(logs))

def blobs(n: int = 300, seed: int = 0) -> NumpyDataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 2)) + np.array([[0, 0], [4, 0], [0, 4]])[y]
    return NumpyDataset((x.astype(np.float32), y), supervised=True)


@dc.compute_context({"default": {}})
def doubled_sum(x: Any) -> float:
    """Double ``x`` in place (the array arrives writable) and sum it."""
    x *= 2
    return float(x.sum())
