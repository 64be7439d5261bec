"""Compute-context records of dryml-sklearn (no framework import here)."""

from __future__ import annotations

from dryml.records import ContextRecord

CONTEXTS: list[ContextRecord] = [
    ContextRecord("sklearn", impl="dryml_sklearn._context:CONTEXT", package="dryml-sklearn"),
]
