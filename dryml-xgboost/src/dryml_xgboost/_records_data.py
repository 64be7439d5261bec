"""Dataset adapter records of dryml-xgboost (no framework import here)."""

from __future__ import annotations

from dryml.records import DatasetAdapterRecord

ADAPTERS: list[DatasetAdapterRecord] = []
