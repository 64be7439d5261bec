"""The TensorFlow / Keras backend for dryml (registered through the `dryml` entry-point group).

Importing this package imports no framework; ``TFDataset`` loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["TFDataset"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "TFDataset":
        value = importlib.import_module("dryml_tf.data").TFDataset
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dryml_tf' has no attribute {name!r}")
