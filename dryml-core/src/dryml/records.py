"""Frozen records that plugins return from the registration hooks.

Records name their implementations lazily as ``"module:attr"`` strings and name the types they
handle as ``"module:QualName"`` strings, so that listing plugins never imports a framework.
"""

from __future__ import annotations

import importlib
from typing import Any

import attrs

__all__ = [
    "ArgCodecRecord",
    "ContextRecord",
    "DatasetAdapterRecord",
    "ExecutorRecord",
    "ResourceProviderRecord",
    "SamplerRecord",
    "SerializerRecord",
    "TrainerRecord",
    "load_ref",
]


def load_ref(ref: str) -> Any:
    """Import and return the object a ``"module:attr.path"`` reference names."""
    module_name, _, attr_path = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split(".") if attr_path else ():
        obj = getattr(obj, part)
    return obj


def _type_paths(value: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """Type paths, each checked to be ``"module:QualName"``: a path in another form (a dotted
    ``"pkg.Model"``) matched no type, so the record was silently never used."""
    paths = (value,) if isinstance(value, str) else tuple(value)
    for path in paths:
        module, sep, name = path.partition(":") if isinstance(path, str) else ("", "", "")
        if not (sep and module and name and ":" not in name):
            raise ValueError(f"the type path {path!r} is not 'module:QualName' (e.g. "
                             "'numpy:ndarray', 'mypkg.models:Model')")
    return paths


@attrs.frozen
class SerializerRecord:
    """Puts values of some types into a ``.dry`` store and gets them back.

    ``types`` are ``"module:QualName"`` paths matched against a value's MRO by name (no import).
    ``impl`` names an object with ``dump(value, writer) -> dict`` and ``load(meta, reader)``
    (see :class:`dryml.format.Serializer`). ``package`` is the pip distribution that provides it,
    named in errors when a file needs it and it is missing.
    """

    name: str
    types: tuple[str, ...] = attrs.field(converter=_type_paths)
    impl: str
    package: str = "dryml-core"


@attrs.frozen
class ArgCodecRecord:
    """Lets values of some types be constructor arguments of an Object.

    ``impl`` names an object with ``encode(value, writer) -> JSON`` and ``decode(data, reader)``
    and ``copy(value)``; see :class:`dryml.format.ArgCodec`.
    """

    name: str
    types: tuple[str, ...] = attrs.field(converter=_type_paths)
    impl: str
    package: str = "dryml-core"


@attrs.frozen
class DatasetAdapterRecord:
    """Converts dryml Datasets to and from one framework's data pipeline (``ds.tf()``...)."""

    framework: str
    impl: str
    package: str


@attrs.frozen
class TrainerRecord:
    """A trainable or component a backend offers (``name`` is how users refer to it)."""

    name: str
    framework: str
    impl: str
    package: str


@attrs.frozen
class ResourceProviderRecord:
    """Reports resources that exist on this machine (``cpu``, ``gpu``...)."""

    name: str
    impl: str
    package: str = "dryml-core"


@attrs.frozen
class ContextRecord:
    """Prepares a worker process for one framework before the framework is imported."""

    framework: str
    impl: str
    package: str


@attrs.frozen
class SamplerRecord:
    """A hyperparameter-search sampler, chosen by ``name`` in ``Search(sampler=name)``.

    ``impl`` names a callable ``impl(seed) -> sampler`` (see :mod:`dryml.search`); it is
    imported only when the sampler is chosen, so an optional engine (Optuna) is imported only
    then. ``extra`` is the pip extra that installs what it needs (``"dryml-core[optuna]"``).
    """

    name: str
    impl: str
    package: str = "dryml-core"
    extra: str | None = None


@attrs.frozen
class ExecutorRecord:
    """Where compute-context calls run, chosen by ``name`` (``configure(executor=name)``).

    ``impl`` names a callable ``impl(**options) -> executor`` (see
    :class:`dryml.context.Executor`); it is imported only when the executor is chosen, so an
    optional engine (Ray) is imported only then. ``extra`` is the pip extra that installs what
    it needs (``"dryml-core[ray]"``), ``requires`` the module that extra provides.
    """

    name: str
    impl: str
    package: str = "dryml-core"
    extra: str | None = None
    requires: str | None = None
