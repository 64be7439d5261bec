"""Dataset adapter records of dryml-torch (no framework import here)."""

from __future__ import annotations

from dryml.records import DatasetAdapterRecord

ADAPTERS: list[DatasetAdapterRecord] = [
    DatasetAdapterRecord("torch", impl="dryml_torch._data_adapter:ADAPTER", package="dryml-torch"),
]
