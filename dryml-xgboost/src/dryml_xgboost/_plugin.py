"""dryml plugin module of dryml-xgboost: hook implementations only.

Each feature keeps its records in its own `_records_*` module. Nothing here, nor in those
modules, imports the framework: records name implementations lazily (`"module:attr"`).
"""

from __future__ import annotations

from dryml.hookspecs import hookimpl
from dryml.records import (
    ArgCodecRecord,
    ContextRecord,
    DatasetAdapterRecord,
    SerializerRecord,
    TrainerRecord,
)
from dryml_xgboost import _records_context, _records_data, _records_models, _records_serializers

__all__ = [
    "dryml_arg_codecs",
    "dryml_contexts",
    "dryml_dataset_adapters",
    "dryml_serializers",
    "dryml_trainers",
    "dryml_trusted_modules",
]


@hookimpl
def dryml_trusted_modules() -> list[str]:
    """Files may name this backend's Objects (and its trusted classes) without `trust=`."""
    return ["dryml_xgboost", *_records_serializers.TRUSTED_MODULES]


@hookimpl
def dryml_serializers() -> list[SerializerRecord]:
    """Framework values for `store.put`."""
    return list(_records_serializers.SERIALIZERS)


@hookimpl
def dryml_arg_codecs() -> list[ArgCodecRecord]:
    """Framework values as constructor arguments."""
    return list(_records_serializers.ARG_CODECS)


@hookimpl
def dryml_dataset_adapters() -> list[DatasetAdapterRecord]:
    """Conversions between dryml Datasets and this framework."""
    return list(_records_data.ADAPTERS)


@hookimpl
def dryml_contexts() -> list[ContextRecord]:
    """Worker-process preparation for this framework."""
    return list(_records_context.CONTEXTS)


@hookimpl
def dryml_trainers() -> list[TrainerRecord]:
    """Trainables and components of this backend."""
    return list(_records_models.TRAINERS)
