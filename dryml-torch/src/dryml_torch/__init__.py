"""The PyTorch backend for dryml (registered through the `dryml` entry-point group).

Importing this package imports no framework; ``TorchDataset`` loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["TorchDataset"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "TorchDataset":
        value = importlib.import_module("dryml_torch.data").TorchDataset
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dryml_torch' has no attribute {name!r}")
