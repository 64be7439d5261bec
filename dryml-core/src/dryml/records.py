"""Frozen records that plugins return from the registration hooks.

Records name their implementations lazily as ``"module:attr"`` strings and name the types they
handle as ``"module:QualName"`` strings, so that listing plugins never imports a framework.
Every field is checked when a record is made: a malformed one is a ``ValueError``, so the
plugin returning it shows as unavailable in ``dryml plugins``, saying why.
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


def _text(instance: Any, attribute: Any, value: Any) -> None:
    """A non-empty string; anything else (a list, None) would fail only where the record is
    used, in an error that names no plugin."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be a non-empty "
                         f"string, not {value!r}")


def _optional_text(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None:
        _text(instance, attribute, value)


def _dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _ref(instance: Any, attribute: Any, value: Any) -> None:
    """A ``"module:attr"`` reference (what :func:`load_ref` imports)."""
    module, sep, attr = value.partition(":") if isinstance(value, str) else ("", "", "")
    if not (sep and _dotted(module) and _dotted(attr)):
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be a 'module:attr' "
                         f"reference (e.g. 'mypkg._impl:CODEC'), not {value!r}")


def _module_name(instance: Any, attribute: Any, value: Any) -> None:
    """None or an absolute module name (``"ray"``, ``"mypkg.sub"``), as ``import`` takes it."""
    if value is not None and not (isinstance(value, str) and _dotted(value)):
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be an absolute "
                         f"module name (e.g. 'ray'), not {value!r}")


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

    name: str = attrs.field(validator=_text)
    types: tuple[str, ...] = attrs.field(converter=_type_paths)
    impl: str = attrs.field(validator=_ref)
    package: str = attrs.field(default="dryml-core", validator=_text)


@attrs.frozen
class ArgCodecRecord:
    """Lets values of some types be constructor arguments of an Object.

    ``impl`` names an object with ``encode(value, writer) -> JSON`` and ``decode(data, reader)``
    and ``copy(value)``; see :class:`dryml.format.ArgCodec`.
    """

    name: str = attrs.field(validator=_text)
    types: tuple[str, ...] = attrs.field(converter=_type_paths)
    impl: str = attrs.field(validator=_ref)
    package: str = attrs.field(default="dryml-core", validator=_text)


@attrs.frozen
class DatasetAdapterRecord:
    """Converts dryml Datasets to and from one framework's data pipeline (``ds.tf()``...)."""

    framework: str = attrs.field(validator=_text)
    impl: str = attrs.field(validator=_ref)
    package: str = attrs.field(validator=_text)


@attrs.frozen
class TrainerRecord:
    """A trainable or component a backend offers (``name`` is how users refer to it)."""

    name: str = attrs.field(validator=_text)
    framework: str = attrs.field(validator=_text)
    impl: str = attrs.field(validator=_ref)
    package: str = attrs.field(validator=_text)


@attrs.frozen
class ResourceProviderRecord:
    """Reports resources that exist on this machine (``cpu``, ``gpu``...)."""

    name: str = attrs.field(validator=_text)
    impl: str = attrs.field(validator=_ref)
    package: str = attrs.field(default="dryml-core", validator=_text)


@attrs.frozen
class ContextRecord:
    """Prepares a worker process for one framework before the framework is imported."""

    framework: str = attrs.field(validator=_text)
    impl: str = attrs.field(validator=_ref)
    package: str = attrs.field(validator=_text)


@attrs.frozen
class SamplerRecord:
    """A hyperparameter-search sampler, chosen by ``name`` in ``Search(sampler=name)``.

    ``impl`` names a callable ``impl(seed) -> sampler`` (see :mod:`dryml.search`); it is
    imported only when the sampler is chosen, so an optional engine (Optuna) is imported only
    then. ``extra`` is the pip extra that installs what it needs (``"dryml-core[optuna]"``).
    """

    name: str = attrs.field(validator=_text)
    impl: str = attrs.field(validator=_ref)
    package: str = attrs.field(default="dryml-core", validator=_text)
    extra: str | None = attrs.field(default=None, validator=_optional_text)


@attrs.frozen
class ExecutorRecord:
    """Where compute-context calls run, chosen by ``name`` (``configure(executor=name)``).

    ``impl`` names a callable ``impl(**options) -> executor`` (see
    :class:`dryml.context.Executor`); it is imported only when the executor is chosen, so an
    optional engine (Ray) is imported only then. ``extra`` is the pip extra that installs what
    it needs (``"dryml-core[ray]"``), ``requires`` the module that extra provides.
    """

    name: str = attrs.field(validator=_text)
    impl: str = attrs.field(validator=_ref)
    package: str = attrs.field(default="dryml-core", validator=_text)
    extra: str | None = attrs.field(default=None, validator=_optional_text)
    requires: str | None = attrs.field(default=None, validator=_module_name)
