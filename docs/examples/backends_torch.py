"""Save a trained PyTorch model with dryml-torch and load it back (docs/backends.md).

The Object rebuilds its network from its constructor arguments; the file holds the weights
(state dict, buffers included) and the optimizer state as raw arrays, never a pickle.
Run: ``python docs/examples/backends_torch.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from dryml import Object, load_object, save_object
from dryml.format import read_manifest


class Classifier(Object):
    """A small network and its optimizer; only the arguments define the architecture."""

    dry_mut = True

    def __init__(self, width: int, dtype: torch.dtype = torch.float32) -> None:
        self.net = torch.nn.Sequential(
            torch.nn.Linear(16, width), torch.nn.BatchNorm1d(width), torch.nn.ReLU(),
            torch.nn.Linear(width, 3)).to(dtype)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-2)

    def train_steps(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
        """A few optimizer steps on one batch."""
        for _ in range(steps):
            self.opt.zero_grad()
            torch.nn.functional.cross_entropy(self.net(x), y).backward()
            self.opt.step()

    def save_object_imp(self, store: Any) -> None:
        store.put("net", self.net)  # the state dict, BatchNorm buffers included
        store.put("opt", self.opt)  # Adam's moments and step counts

    def load_object_imp(self, store: Any) -> None:
        self.net.load_state_dict(store.get("net"))
        self.opt.load_state_dict(store.get("opt"))


def main() -> None:
    """Train, save, load, and check the loaded model answers bit for bit the same."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 16), torch.randint(0, 3, (64,))
    model = Classifier(128, dtype=torch.float32)
    model.train_steps(x, y, 5)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "classifier.dry"
        save_object(model, path)
        manifest = read_manifest(path)  # no torch needed for this
        print("frameworks:", manifest.frameworks, "plugins:", manifest.plugins)
        loaded = load_object(path)
    model.net.eval()
    loaded.net.eval()
    with torch.no_grad():
        assert torch.equal(model.net(x), loaded.net(x))
    # Training goes on exactly as it would have without the save.
    model.net.train()
    loaded.net.train()
    model.train_steps(x, y, 2)
    loaded.train_steps(x, y, 2)
    assert all(torch.equal(a, b) for a, b in zip(model.net.parameters(),
                                                 loaded.net.parameters(), strict=True))
    print("loaded model: identical outputs, identical training")


if __name__ == "__main__":
    main()
