"""Torch workers: prepared before torch loads, and Objects' compute lifecycle inside them."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from backend_checks import require_backend

import dryml.context as ctx
from dryml import Object
from dryml.context import FakeCpuProvider, FakeGpuProvider, compute_context

pytestmark = pytest.mark.usefixtures("fake_machine")



@pytest.fixture(scope="module")
def fake_machine() -> Iterator[None]:
    require_backend("torch")
    ctx.configure(providers=[FakeCpuProvider(4), FakeGpuProvider(2)], max_workers=3)
    yield
    ctx.configure()


class Base(Object):
    """Records the compute hooks it sees (base-first order is part of the contract)."""

    dry_framework = "torch"
    dry_mut = True

    def __init__(self) -> None:
        self.log: list[str] = []

    def save_object_imp(self, store: Any) -> None:
        store.put("log", list(self.log))

    def load_object_imp(self, store: Any) -> None:
        self.log = list(store.get("log"))

    def compute_prepare_imp(self) -> None:
        self.log.append("prepare:base")

    def load_compute_imp(self) -> None:
        self.log.append("load:base")

    def save_compute_imp(self) -> None:
        self.log.append("save:base")

    def compute_cleanup_imp(self) -> None:
        self.log.append("cleanup:base")


class Linear(Base):
    """Weights live as numpy outside compute mode, as a torch module inside it."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.weight = rng.normal(size=(n_out, n_in)).astype("float32")

    def save_object_imp(self, store: Any) -> None:
        store.put("weight", self.weight)

    def load_object_imp(self, store: Any) -> None:
        self.weight = store.get("weight")

    def load_compute_imp(self) -> None:
        import torch

        self.log.append("load:linear")
        self.module = torch.nn.Linear(*self.dry_args, bias=False)
        with torch.no_grad():
            self.module.weight.copy_(torch.from_numpy(self.weight))

    def save_compute_imp(self) -> None:
        self.log.append("save:linear")
        self.weight = self.module.weight.detach().numpy().copy()

    def compute_cleanup_imp(self) -> None:
        self.log.append("cleanup:linear")
        del self.module


@compute_context(update_objs=True)
def train_step(model: Linear, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    assert ctx.in_compute_mode(model)
    opt = torch.optim.SGD(model.module.parameters(), lr=0.1)
    loss = torch.nn.functional.mse_loss(model.module(torch.from_numpy(x)), torch.from_numpy(y))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss)


@compute_context()
def torch_worker_facts() -> dict[str, Any]:
    import torch

    current = ctx.current_context()
    assert current is not None
    return {"frameworks": current.frameworks, "threads": torch.get_num_threads(),
            "cuda_visible": os.environ["CUDA_VISIBLE_DEVICES"],
            "cuda": torch.cuda.is_available(), "gpus": current.local_gpus("torch"),
            "omp": os.environ["OMP_NUM_THREADS"]}


def test_a_torch_object_trains_in_a_torch_worker_and_its_state_comes_back() -> None:
    model = Linear(3, 1)
    before = model.weight.copy()
    x = np.ones((4, 3), dtype="float32")
    y = np.zeros((4, 1), dtype="float32")
    first = train_step(model, x, y)
    second = train_step(model, x, y)
    assert second < first
    assert not np.allclose(model.weight, before)
    assert not hasattr(model, "module")  # left compute mode before coming back
    assert model.log[:6] == ["prepare:base", "load:base", "load:linear",
                             "save:base", "save:linear", "cleanup:base"]
    assert model.log[6] == "cleanup:linear"


def test_the_requirement_comes_from_the_objects_framework() -> None:
    @compute_context()
    def frameworks(model: Linear) -> tuple[str, ...]:
        return ctx.current_context().frameworks  # type: ignore[union-attr]

    assert frameworks(Linear(2, 2)) == ("torch",)


@dataclasses.dataclass
class Experiment:
    """A plain record holding a model, as a user's pipeline might."""

    model: Linear
    note: str = "run-1"


def test_a_model_held_by_a_dataclass_runs_in_its_frameworks_context() -> None:
    """The requirement came from the arguments' own Objects only: a torch model in a dataclass
    ran in the framework-free context (no torch share; on a GPU machine, no GPU) and never
    entered compute mode."""
    @compute_context()
    def seen(run: Experiment) -> tuple[tuple[str, ...], bool]:
        return (ctx.current_context().frameworks,  # type: ignore[union-attr]
                hasattr(run.model, "module"))

    assert seen(Experiment(Linear(2, 2))) == (("torch",), True)


def test_torch_threads_follow_the_cpus_granted() -> None:
    facts = torch_worker_facts(call_context_reqs={"torch": {"num_cpus": 2}})
    assert facts["frameworks"] == ("torch",)
    assert facts["threads"] == 2 and facts["omp"] == "2"
    assert facts["cuda_visible"] == ""


@compute_context({"torch": {"num_cpus": 2}})
def torch_threads(set_to: int | None = None) -> int:
    import torch

    threads = torch.get_num_threads()
    if set_to is not None:
        torch.set_num_threads(set_to)
    return threads


def test_each_call_starts_with_the_threads_granted_whatever_the_last_one_set() -> None:
    """A call's ``torch.set_num_threads(4)`` in a two-CPU worker stayed for every later call
    on that warm worker, other code's included (found by review)."""
    assert torch_threads(set_to=4) == 2
    assert torch_threads() == 2


def test_a_fractional_fake_gpu_is_the_only_one_torch_sees() -> None:
    facts = torch_worker_facts(call_context_reqs={"torch": {"gpu/1": 0.5, "cpu/0": 1.0}})
    assert facts["cuda_visible"] == "GPU-fake-0001"
    assert not facts["cuda"]  # a fake uuid: CUDA finds nothing, and nothing breaks
    assert facts["gpus"] == [{"ordinal": 0, "fraction": 0.5, "memory_total": 16 << 30,
                              "uuid": "GPU-fake-0001", "fake": True}]


def test_the_caller_never_imports_torch(tmp_path: Any) -> None:
    script = tmp_path / "caller.py"
    script.write_text(textwrap.dedent("""
        import sys
        import dryml.context as ctx

        @ctx.compute_context({'torch': {}})
        def version():
            import torch
            return str(torch.__version__)  # torch.__version__ itself is a torch class

        print(bool(version()), 'torch' in sys.modules)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["True", "False"], out.stderr
