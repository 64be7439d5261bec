"""Dataset adapter records of dryml-tf (no framework import here)."""

from __future__ import annotations

from dryml.records import DatasetAdapterRecord

ADAPTERS: list[DatasetAdapterRecord] = [
    DatasetAdapterRecord("tf", impl="dryml_tf._data_adapter:ADAPTER", package="dryml-tf"),
]
