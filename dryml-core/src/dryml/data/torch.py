"""``TorchDataset``, provided by ``dryml-torch`` (seed-compatible import path).

``from dryml.data.torch import TorchDataset`` resolves through the plugin registry's
``dryml_dataset_adapters`` records and raises :class:`~dryml.errors.BackendUnavailableError`
("pip install dryml-torch") when the backend is not installed. Importing this module imports
nothing from PyTorch; asking for ``TorchDataset`` does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TorchDataset"]  # noqa: F822 - resolved by __getattr__


def __getattr__(name: str) -> Any:
    if name == "TorchDataset":
        from dryml.data._adapters import adapter

        return adapter("torch").dataset_class  # not cached: follows the active plugins
    raise AttributeError(f"module 'dryml.data.torch' has no attribute {name!r}")
