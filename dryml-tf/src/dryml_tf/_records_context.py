"""Compute-context records of dryml-tf (no framework import here)."""

from __future__ import annotations

from dryml.records import ContextRecord

CONTEXTS: list[ContextRecord] = [
    ContextRecord("tf", impl="dryml_tf._context:CONTEXT", package="dryml-tf"),
]
