"""``TFDataset``, provided by ``dryml-tf`` (seed-compatible import path).

``from dryml.data.tf import TFDataset`` resolves through the plugin registry's
``dryml_dataset_adapters`` records and raises :class:`~dryml.errors.BackendUnavailableError`
("pip install dryml-tf") when the backend is not installed. Importing this module imports
nothing from TensorFlow; asking for ``TFDataset`` does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TFDataset"]  # noqa: F822 - resolved by __getattr__


def __getattr__(name: str) -> Any:
    if name == "TFDataset":
        from dryml.data._adapters import adapter

        return adapter("tf").dataset_class  # not cached: follows the active plugins
    raise AttributeError(f"module 'dryml.data.tf' has no attribute {name!r}")
