"""dryml-torch against the shared serializer conformance suite (dryml.testing.serializers).

The Objects below are what a user writes: the module is rebuilt from constructor arguments in
``__init__`` and its weights come back through ``load_state_dict(store.get(...))``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from dryml import Object
from dryml.testing.serializers import SerializerCase, SerializerConformance

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("torch")
    pytest.importorskip("dryml_torch")


class TorchMLP(Object):
    """A small trained network with BatchNorm buffers and Adam state."""

    dry_mut = True
    dry_framework = "torch"

    def __init__(self, width: int, dtype: Any = None, device: Any = None,
                 activation: type | None = None) -> None:
        import torch

        act = activation or torch.nn.ReLU
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, width), torch.nn.BatchNorm1d(width), act(),
            torch.nn.Linear(width, 3)).to(dtype=dtype or torch.float32, device=device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-2)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=2, gamma=0.5)

    def fit(self, steps: int) -> None:
        """A few deterministic training steps (weights, buffers and Adam state change)."""
        import torch

        gen = torch.Generator().manual_seed(1)
        x = torch.randn(32, 8, generator=gen)
        y = torch.randint(0, 3, (32,), generator=gen)
        for _ in range(steps):
            self.opt.zero_grad()
            torch.nn.functional.cross_entropy(self.net(x), y).backward()
            self.opt.step()
            self.sched.step()

    def save_object_imp(self, store: Any) -> None:
        store.put("net", self.net)
        store.put("opt", self.opt)
        store.put("sched", self.sched)

    def load_object_imp(self, store: Any) -> None:
        self.net.load_state_dict(store.get("net"))
        self.opt.load_state_dict(store.get("opt"))
        self.sched.load_state_dict(store.get("sched"))


class TensorArgs(Object):
    """Tensors as constructor arguments: a big one (a member), bfloat16, a Parameter."""

    def __init__(self, table: Any, half: Any, param: Any, shape: Any) -> None:
        self.table, self.half, self.param, self.shape = table, half, param, shape


class TiedLM(Object):
    """An embedding tied to the output layer (one storage, two state-dict keys)."""

    def __init__(self, vocab: int, dim: int) -> None:
        import torch

        self.emb = torch.nn.Embedding(vocab, dim)
        self.head = torch.nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.emb.weight
        self.model = torch.nn.ModuleDict({"emb": self.emb, "head": self.head})
        self.bias = torch_arange(vocab)

    def save_object_imp(self, store: Any) -> None:
        store.put("model", self.model)
        store.put("bias", self.bias)

    def load_object_imp(self, store: Any) -> None:
        self.model.load_state_dict(store.get("model"))
        self.bias = store.get("bias")


def torch_arange(n: int) -> Any:
    import torch

    return torch.arange(n, dtype=torch.float64) / 7


def build_mlp() -> TorchMLP:
    import torch

    torch.manual_seed(0)
    obj = TorchMLP(256, dtype=torch.float32, device=torch.device("cpu"),
                   activation=torch.nn.GELU)
    obj.fit(3)
    return obj


def mlp_output(obj: TorchMLP) -> dict[str, np.ndarray]:
    import torch

    x = torch.linspace(-2, 2, 40).reshape(5, 8)
    obj.net.eval()
    with torch.no_grad():
        y = obj.net(x).numpy()
    obj.net.train()
    state = obj.opt.state_dict()["state"]
    return {"y": y, "exp_avg_sq": state[0]["exp_avg_sq"].numpy(),
            "step": np.asarray(float(state[0]["step"])),
            "lr": np.asarray(obj.opt.param_groups[0]["lr"]),
            "running_var": obj.net[1].running_var.numpy(),
            "batches": obj.net[1].num_batches_tracked.numpy()}


def build_tensor_args() -> TensorArgs:
    import torch

    gen = torch.Generator().manual_seed(2)
    table = torch.randn(64, 128, generator=gen)
    half = torch.randn(3000, generator=gen).to(torch.bfloat16)
    param = torch.nn.Parameter(torch.randn(4, 4, generator=gen))
    return TensorArgs(table, half, param, torch.Size([2, 3]))


def tensor_args_output(obj: TensorArgs) -> dict[str, np.ndarray]:
    import torch

    assert isinstance(obj.param, torch.nn.Parameter) and obj.param.requires_grad
    assert obj.half.dtype == torch.bfloat16 and obj.shape == torch.Size([2, 3])
    return {"table": obj.table.numpy(), "half": obj.half.view(torch.int16).numpy(),
            "param": obj.param.detach().numpy()}


def build_tied() -> TiedLM:
    import torch

    torch.manual_seed(3)
    return TiedLM(500, 32)


def tied_output(obj: TiedLM) -> dict[str, np.ndarray]:
    import torch

    assert obj.head.weight is obj.emb.weight
    with torch.no_grad():
        logits = obj.head(obj.emb(torch.tensor([1, 5, 499])))
    return {"logits": logits.numpy(), "bias": obj.bias.numpy()}


def _case(name: str, build: Any, output: Any) -> SerializerCase:
    return SerializerCase(name, build=build, output=output, plugin="torch",
                          package="dryml-torch", frameworks=("torch",),
                          framework_modules=("torch",))


class TestTorchConformance(SerializerConformance):
    """Round trip, fresh process, backend missing, corruption, inspect, version skew."""

    cases = (
        _case("mlp_adam", build_mlp, mlp_output),
        _case("tensor_args", build_tensor_args, tensor_args_output),
        _case("tied_weights", build_tied, tied_output),
    )
