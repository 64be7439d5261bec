"""Memory-mapped loading of torch state (``load_object(path, mmap=...)``): tensors equal to
what was saved; copy-on-write tensors backed by the file, whose writes never reach it."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from dryml import Object, load_object, save_object

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("torch")
    pytest.importorskip("dryml_torch")

import torch  # noqa: E402


class StateHolder(Object):
    """Keeps a framework state dict in its store."""

    def __init__(self) -> None:
        self.state: Any = None

    def save_object_imp(self, store: Any) -> None:
        store.put("state", self.state)

    def load_object_imp(self, store: Any) -> None:
        self.state = store.get("state")



def _mapped_from(path: Path, address: int) -> bool:
    """Whether ``address`` lies in a mapping of ``path`` in this process (Linux)."""
    target = str(path.resolve())
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[-1] == target
    return False


def test_torch_state_loads_with_mmap(tmp_path: Path) -> None:
    net = torch.nn.Linear(300, 200)
    holder = StateHolder()
    holder.state = {"weight": net.weight.detach(), "bias": net.bias.detach()}
    save_object(holder, tmp_path / "t.dry")
    state = load_object(tmp_path / "t.dry", mmap=True).state
    for key, value in holder.state.items():
        assert torch.equal(state[key], value)
        state[key].add_(1)  # the backend hands out writable tensors (it copies mapped arrays)
    # copy-on-write: torch takes the mapped arrays as they are (no copy, no warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = load_object(tmp_path / "t.dry", mmap="c").state
    weight = state["weight"]
    assert torch.equal(weight, holder.state["weight"])
    if sys.platform.startswith("linux"):
        assert _mapped_from(tmp_path / "t.dry", weight.data_ptr())
    before = (tmp_path / "t.dry").read_bytes()
    weight.add_(1)
    assert (tmp_path / "t.dry").read_bytes() == before


MAPPED_BATCHES = """
import sys
import numpy as np
from dryml import load_object
from dryml.data import NumpyDataset
sys.path.insert(0, sys.argv[2])  # this test's module, for its StateHolder
mapped = load_object(sys.argv[1], mmap=True, trust=["test_torch_mmap"]).state
x = mapped["x"]
assert isinstance(x, np.memmap) and not x.flags.writeable
data = NumpyDataset((x, mapped["y"]), supervised=True)
for source in (data, data.batch(32)):
    first = next(iter(source.torch()))[0]
    first.mul_(2.0)  # in place, as a user's augmentation might
print("survived", float(x[0, 0]))
"""


def test_batches_of_mapped_arrays_are_writable_copies(tmp_path: Path) -> None:
    """A Dataset of arrays loaded with ``mmap=True`` gave torch tensors over the read-only
    pages (DLPack for an np.memmap; torch ignores the flag), and an in-place op on a batch
    killed the process with SIGSEGV (found by review). Read-only arrays are copied now."""
    import subprocess

    import numpy as np

    rng = np.random.default_rng(0)
    holder = StateHolder()
    holder.state = {"x": rng.normal(size=(2000, 8)).astype(np.float32),
                    "y": rng.integers(0, 3, 2000)}
    path = tmp_path / "data.dry"
    save_object(holder, path)
    done = subprocess.run([sys.executable, "-c", MAPPED_BATCHES, str(path),
                           str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["survived", str(float(holder.state["x"][0, 0]))]
    np.testing.assert_array_equal(load_object(path).state["x"], holder.state["x"])


def test_a_warning_filter_added_while_a_read_only_input_is_converted_is_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Converting a read-only array (a memory-mapped dataset, batched) kept torch's warning
    about it quiet with ``catch_warnings`` around every call, which swaps the process's
    filters: a filter another thread added meanwhile was dropped when the call ended. torch
    warns once per process, so only the first call is wrapped now."""
    import numpy as np

    from dryml_torch._models_loop import model_inputs

    net = torch.nn.Linear(3, 1)
    frozen = np.ones((4, 3), dtype=np.float32)
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and torch's warning never reaches the caller
        assert model_inputs(net, frozen, batched=True).shape == (4, 3)
        real = torch.from_numpy

        def from_numpy(array: Any) -> torch.Tensor:  # another thread, during the conversion
            warnings.filterwarnings("ignore", "added meanwhile")
            return real(array)

        monkeypatch.setattr(torch, "from_numpy", from_numpy)
        model_inputs(net, frozen, batched=True)
        assert any(f[1] is not None and f[1].pattern == "added meanwhile"
                   for f in warnings.filters)
