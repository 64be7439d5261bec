"""Compute-context records of dryml-xgboost (no framework import here)."""

from __future__ import annotations

from dryml.records import ContextRecord

CONTEXTS: list[ContextRecord] = [
    ContextRecord("xgboost", impl="dryml_xgboost._context:CONTEXT", package="dryml-xgboost"),
]
