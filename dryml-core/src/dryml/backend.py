"""Building blocks for backend packages (dryml-torch, dryml-tf, ... and third-party ones).

A backend keeps its records in modules named ``<package>._records_<feature>``:

=========================  ====================================================
module                     names it defines (lists of records from dryml.records)
=========================  ====================================================
``_records_serializers``   ``SERIALIZERS``, ``ARG_CODECS``, ``TRUSTED_MODULES``
``_records_data``          ``ADAPTERS``
``_records_context``       ``CONTEXTS``
``_records_models``        ``TRAINERS``
=========================  ====================================================

and exposes one :class:`BackendPlugin` as its entry point::

    # mybackend/_plugin.py
    from dryml.backend import BackendPlugin
    plugin = BackendPlugin("mybackend")

    # pyproject.toml
    [project.entry-points.dryml]
    mine = "mybackend._plugin:plugin"

A missing records module (or name) counts as no records. Nothing here imports a framework:
the records modules must not either.
"""

from __future__ import annotations

import importlib
from typing import Any

from dryml._trust import TrustPolicy
from dryml.hookspecs import hookimpl
from dryml.records import (
    ArgCodecRecord,
    ContextRecord,
    DatasetAdapterRecord,
    SerializerRecord,
    TrainerRecord,
)

__all__ = ["BackendPlugin", "TrustPolicy"]


class BackendPlugin:
    """Implements every registration hook from a backend's ``_records_*`` modules."""

    def __init__(self, package: str) -> None:
        self.package = package

    def __repr__(self) -> str:
        return f"BackendPlugin({self.package!r})"

    def _records(self, feature: str, name: str) -> list[Any]:
        module_name = f"{self.package}._records_{feature}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return []
        return list(getattr(module, name, []))

    @hookimpl
    def dryml_trusted_modules(self) -> list[str]:
        """The backend's own package and its ``models`` and ``data`` modules (where its Objects
        live), plus the framework modules it trusts: each one a module a file may make dryml
        import, whose classes are trusted once imported."""
        return [self.package, f"{self.package}.models", f"{self.package}.data",
                *self._records("serializers", "TRUSTED_MODULES")]

    @hookimpl
    def dryml_serializers(self) -> list[SerializerRecord]:
        """Framework values for ``store.put``."""
        return self._records("serializers", "SERIALIZERS")

    @hookimpl
    def dryml_arg_codecs(self) -> list[ArgCodecRecord]:
        """Framework values as constructor arguments."""
        return self._records("serializers", "ARG_CODECS")

    @hookimpl
    def dryml_dataset_adapters(self) -> list[DatasetAdapterRecord]:
        """Conversions between dryml Datasets and the framework."""
        return self._records("data", "ADAPTERS")

    @hookimpl
    def dryml_contexts(self) -> list[ContextRecord]:
        """Worker-process preparation for the framework."""
        return self._records("context", "CONTEXTS")

    @hookimpl
    def dryml_trainers(self) -> list[TrainerRecord]:
        """Trainables and components of the backend."""
        return self._records("models", "TRAINERS")
