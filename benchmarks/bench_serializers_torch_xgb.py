"""Benchmark: dryml-torch and dryml-xgboost saves/loads against the frameworks' own paths.

* torch: a Transformer encoder with about 100 MB of float32 weights (~130 tensors), saved
  with ``store.put("net", module)`` vs ``torch.save(model.state_dict())``; loaded as a state
  dict (``store.get`` vs ``torch.load``) and as a whole model (build the module, then
  ``load_state_dict``, in both).
* xgboost: a 500-tree Booster, ``store.put("booster", booster)`` vs ``booster.save_model(
  "x.ubj")`` / ``Booster().load_model("x.ubj")`` (the same UBJSON bytes).

Methods run round-robin (every round runs each once, in an order shuffled per round so that
no method always follows the same one: what ran right after an XGBoost call measured slower,
by up to ~1 ms at times; medians over rounds, minimums in brackets: on a shared machine
the minimum shows the cost without the neighbours' noise),
saves go to fresh paths, loads read from the page cache. ``durable=False`` skips fsync like
the native paths do; the default durable save is shown beside ``+fsync`` native saves.
Run: ``python benchmarks/bench_serializers_torch_xgb.py`` (or ``nox -s bench``).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dryml import Object, load_object, save_object

REPEAT = 7
XGB_REPEAT = 25  # small files: more rounds for a stable median
MB = 2**20
Method = tuple[str, Callable[[Path], Any], Callable[[Path], Any]]


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


Row = tuple[float, float, int, float, float]  # median save, median load, size, min save, min load


def run(methods: list[Method], tmp: Path, suffix: str = "", repeat: int = REPEAT
        ) -> dict[str, Row]:
    """Median (and min) save and load seconds and the file size of each method."""
    saves: dict[str, list[float]] = {m[0]: [] for m in methods}
    loads: dict[str, list[float]] = {m[0]: [] for m in methods}
    rng = random.Random(0)  # the same shuffled orders in every run

    def shuffled() -> list[tuple[int, Method]]:
        order = list(enumerate(methods))
        rng.shuffle(order)
        return order

    for i in range(repeat):
        for j, (label, save, _) in shuffled():
            os.sync()
            start = timeit.default_timer()
            save(tmp / f"f{j}-{i}{suffix}")
            saves[label].append(timeit.default_timer() - start)
            if i:
                (tmp / f"f{j}-{i - 1}{suffix}").unlink()
    last = repeat - 1
    for j, (_, _, load) in enumerate(methods):
        fsync_path(tmp / f"f{j}-{last}{suffix}")
        load(tmp / f"f{j}-{last}{suffix}")
    for _ in range(repeat):
        for j, (label, _, load) in shuffled():
            start = timeit.default_timer()
            load(tmp / f"f{j}-{last}{suffix}")
            loads[label].append(timeit.default_timer() - start)
    return {label: (statistics.median(saves[label]), statistics.median(loads[label]),
                    (tmp / f"f{j}-{last}{suffix}").stat().st_size,
                    min(saves[label]), min(loads[label]))
            for j, (label, _, _) in enumerate(methods)}


class TorchNet(Object):
    """Builds its network from arguments; weights travel with ``store.put``."""

    def __init__(self, layers: int) -> None:
        import torch

        layer = torch.nn.TransformerEncoderLayer(512, 8, dim_feedforward=2048,
                                                 batch_first=True)
        self.net = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def save_object_imp(self, store: Any) -> None:
        store.put("net", self.net)

    def load_object_imp(self, store: Any) -> None:
        self.net.load_state_dict(store.get("net"))


class TorchState(Object):
    """Loads only the state dict (no module rebuilt): serialization alone."""

    def __init__(self, layers: int) -> None:
        self.net: Any = None

    def save_object_imp(self, store: Any) -> None:
        store.put("net", self.net)

    def load_object_imp(self, store: Any) -> None:
        self.state = store.get("net")


def torch_methods() -> list[Method]:
    import torch

    torch.manual_seed(0)
    obj = TorchNet(8)
    state_dict = obj.net.state_dict()
    state_obj = TorchState(8)
    state_obj.net = obj.net
    nbytes = sum(t.numel() * t.element_size() for t in state_dict.values())
    print(f"torch: {len(state_dict)} tensors, {nbytes / MB:.1f} MB of weights")

    def native_save(p: Path) -> None:
        torch.save(state_dict, p)

    def native_save_fsync(p: Path) -> None:
        native_save(p)
        fsync_path(p)

    def native_model(p: Path) -> None:
        TorchNet(8).net.load_state_dict(torch.load(p))

    def check(p: Path) -> None:
        loaded = load_object(p)
        assert all(torch.equal(loaded.net.state_dict()[k], v) for k, v in state_dict.items())

    check_file = Path(tempfile.mkdtemp()) / "check.dry"
    save_object(obj, check_file)
    check(check_file)
    return [
        ("torch.save / torch.load (state dict)", native_save, torch.load),
        ("torch.save+fsync / build + torch.load + load_state_dict", native_save_fsync,
         native_model),
        ("dryml durable=False / load_object (state dict)",
         lambda p: save_object(state_obj, p, durable=False), load_object),
        ("dryml durable / load_object (build + load_state_dict)",
         lambda p: save_object(obj, p), load_object),
    ]


class XGBHolder(Object):
    """A Booster stored with ``store.put``."""

    def __init__(self) -> None:
        self.booster: Any = None

    def save_object_imp(self, store: Any) -> None:
        store.put("booster", self.booster)

    def load_object_imp(self, store: Any) -> None:
        self.booster = store.get("booster")


def xgb_methods() -> list[Method]:
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 20)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] + np.sin(x[:, 2]) + rng.normal(0, 0.5, len(x)) > 0).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.1,
                         "nthread": 2, "seed": 0}, xgb.DMatrix(x, label=y), 500)
    print(f"xgboost: {booster.num_boosted_rounds()} trees")
    obj = XGBHolder()
    obj.booster = booster

    def native_load(p: Path) -> xgb.Booster:
        b = xgb.Booster()
        b.load_model(p)
        return b

    def native_save(p: Path) -> None:
        booster.save_model(p)  # p ends with .ubj: XGBoost picks the format from it

    def native_save_fsync(p: Path) -> None:
        native_save(p)
        fsync_path(p)

    check_file = Path(tempfile.mkdtemp()) / "check.dry"
    save_object(obj, check_file)
    data = xgb.DMatrix(x[:1000])
    assert np.array_equal(load_object(check_file).booster.predict(data), booster.predict(data))
    return [
        ("booster.save_model / load_model (.ubj)", native_save, native_load),
        ("booster.save_model+fsync / load_model (.ubj)", native_save_fsync, native_load),
        ("dryml durable=False / load_object", lambda p: save_object(obj, p, durable=False),
         load_object),
        ("dryml durable / load_object", lambda p: save_object(obj, p), load_object),
        ("dryml durable=False, compress=False / load_object",
         lambda p: save_object(obj, p, durable=False, compress=False), load_object),
    ]


def table(title: str, rows: dict[str, Row], pairs: list[tuple[str, str]],
          repeat: int = REPEAT) -> None:
    print(f"\n## {title} (median of {repeat}; min in brackets)\n")
    print("| method | save ms | load ms | size MB |")
    print("|---|---:|---:|---:|")
    for label, (save, load, size, save_min, load_min) in rows.items():
        print(f"| {label} | {save * 1e3:.1f} [{save_min * 1e3:.1f}] | "
              f"{load * 1e3:.1f} [{load_min * 1e3:.1f}] | {size / MB:.3f} |")
    print("\n| dryml vs native | save | load | size |")
    print("|---|---:|---:|---:|")
    for ours, native in pairs:
        a, b = rows[ours], rows[native]
        print(f"| {ours} vs {native} | {a[0] / b[0]:.2f}x [{a[3] / b[3]:.2f}x] | "
              f"{a[1] / b[1]:.2f}x [{a[4] / b[4]:.2f}x] | {a[2] / b[2]:.3f}x |")


def main() -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("DRYML_BENCH_DIR")) as tmp:
        methods = torch_methods()
        rows = run(methods, Path(tmp))
        labels = [m[0] for m in methods]
        table("torch: ~100 MB Transformer encoder", rows,
              [(labels[2], labels[0]), (labels[3], labels[1])])
    with tempfile.TemporaryDirectory(dir=os.environ.get("DRYML_BENCH_DIR")) as tmp:
        methods = xgb_methods()
        rows = run(methods, Path(tmp), suffix=".ubj", repeat=XGB_REPEAT)
        labels = [m[0] for m in methods]
        table("xgboost: 500 trees", rows,
              [(labels[2], labels[0]), (labels[3], labels[1]), (labels[4], labels[0])],
              XGB_REPEAT)


if __name__ == "__main__":
    main()
