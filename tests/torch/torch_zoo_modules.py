"""Hand-written torch modules of the zoo (module level, so that pickle can find them too)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["Buffers", "SharedViews", "TiedLM", "WithExtra"]


class TiedLM(torch.nn.Module):
    """An embedding whose weight is also the output layer's (one Parameter, two names)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 50, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, x: Any) -> Any:
        return self.head(self.emb(x))


class Buffers(torch.nn.Module):
    """Buffers of several dtypes, one of them not persistent (in no state dict)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(6, 3).double()
        self.register_buffer("mask", torch.arange(6) % 2 == 0)
        self.register_buffer("count", torch.tensor(7, dtype=torch.int64))
        self.register_buffer("scale", torch.linspace(0, 1, 6).to(torch.bfloat16))
        self.register_buffer("scratch", torch.zeros(3), persistent=False)

    def forward(self, x: Any) -> Any:
        return self.lin(x.double() * self.mask * self.scale.double())


class WithExtra(torch.nn.Linear):
    """A layer with extra state (plain values) beside its weights."""

    def __init__(self) -> None:
        super().__init__(4, 2)
        self.vocab: Any = {"words": ["a", "b"], "version": 3}

    def get_extra_state(self) -> Any:
        return self.vocab

    def set_extra_state(self, state: Any) -> None:
        self.vocab = state


class SharedViews(torch.nn.Module):
    """Buffers that are views of a parameter's memory (a slice and a transpose of it)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(6, 4))
        self.register_buffer("first_rows", self.weight.detach()[:2])
        self.register_buffer("transposed", self.weight.detach().t())

    def forward(self, x: Any) -> Any:
        return x @ self.transposed + self.first_rows.sum()
