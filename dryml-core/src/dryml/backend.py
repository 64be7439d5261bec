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

A missing records module (or name) counts as no records. A module named ``_records_*`` that
is not one of these, or a records module defining a name close to one of its names
(``SERIALIZER`` for ``SERIALIZERS``), is most likely a typo that would leave the backend
silently without those records: it warns (:class:`dryml.errors.DrymlPluginWarning`) the
first time the backend's records are read. Nothing here imports a framework: the records
modules must not either.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
import warnings
from typing import Any

from dryml._trust import TrustPolicy, static_attribute
from dryml.errors import DrymlPluginWarning
from dryml.hookspecs import hookimpl
from dryml.records import (
    ArgCodecRecord,
    ContextRecord,
    DatasetAdapterRecord,
    SerializerRecord,
    TrainerRecord,
)

__all__ = ["BackendPlugin", "TrustPolicy", "static_attribute"]

#: The records modules a backend may have and the names each one defines.
RECORDS: dict[str, tuple[str, ...]] = {
    "serializers": ("SERIALIZERS", "ARG_CODECS", "TRUSTED_MODULES"),
    "data": ("ADAPTERS",),
    "context": ("CONTEXTS",),
    "models": ("TRAINERS",),
}


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


class BackendPlugin:
    """Implements every registration hook from a backend's ``_records_*`` modules."""

    def __init__(self, package: str) -> None:
        self.package = package
        self._checked: set[str] = set()  # the records modules whose names were checked
        self._layout_checked = False

    def __repr__(self) -> str:
        return f"BackendPlugin({self.package!r})"

    def _records(self, feature: str, name: str) -> list[Any]:
        self._check_layout()
        module_name = f"{self.package}._records_{feature}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return []
        if feature not in self._checked:
            self._checked.add(feature)
            known = list(RECORDS[feature])
            for defined in vars(module):
                hint = _did_you_mean(defined, known) if defined not in known else ""
                if hint:
                    warnings.warn(
                        f"{module_name} defines {defined}, which dryml does not read{hint}: "
                        f"the backend {self.package!r} has no such records until it is "
                        f"renamed (a records module of this kind defines {', '.join(known)})",
                        DrymlPluginWarning, stacklevel=2)
        return list(getattr(module, name, []))

    def _check_layout(self) -> None:
        """Warn once about a ``_records_*`` module that dryml never reads (a typo)."""
        if self._layout_checked:
            return
        self._layout_checked = True
        spec = importlib.util.find_spec(self.package)
        where = spec.submodule_search_locations if spec is not None else None
        if not where:
            return
        known = [f"_records_{feature}" for feature in RECORDS]
        for found in pkgutil.iter_modules(where):
            if found.name.startswith("_records_") and found.name not in known:
                warnings.warn(
                    f"the backend {self.package!r} has a module {found.name}, which dryml "
                    f"never reads{_did_you_mean(found.name, known)}: records modules are "
                    f"{', '.join(known)}", DrymlPluginWarning, stacklevel=3)

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
