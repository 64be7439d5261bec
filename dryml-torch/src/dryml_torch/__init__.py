"""The PyTorch backend for dryml (registered through the `dryml` entry-point group)."""

from __future__ import annotations

__all__: list[str] = []
__version__ = "0.1.0"
