"""Compute-context records of dryml-torch (no framework import here)."""

from __future__ import annotations

from dryml.records import ContextRecord

CONTEXTS: list[ContextRecord] = [
    ContextRecord("torch", impl="dryml_torch._context:CONTEXT", package="dryml-torch"),
]
