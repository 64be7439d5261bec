"""The manifest's schema, checked strictly with a private cattrs converter."""

from __future__ import annotations

from typing import Any

import attrs
import cattrs

from dryml.errors import FormatError
from dryml.format._container import MemberInfo

__all__ = ["Manifest", "NodeRecord", "parse_manifest"]


@attrs.frozen
class NodeRecord:
    """One Object of the file's object graph; children come before their parents."""

    id: str
    cls: str
    dry_mut: bool
    args: list[Any]
    kwargs: dict[str, Any]
    state: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Manifest:
    """Everything a ``.dry`` file says about itself."""

    format: str
    format_version: int
    dryml_version: str
    created: str
    root: str
    objects: list[NodeRecord]
    members: dict[str, MemberInfo]
    plugins: dict[str, str] = attrs.field(factory=dict)
    frameworks: dict[str, str] = attrs.field(factory=dict)
    #: the MRO (class paths) of every class the file names, for indexes that import nothing
    classes: dict[str, list[str]] = attrs.field(factory=dict)
    #: JSON metadata given to save_object (a Repo keeps metrics here)
    metadata: dict[str, Any] | None = None


def _strict(tp: type) -> Any:
    def check(value: Any, _: Any) -> Any:
        # bool is an int subclass; JSON true must not pass as 1, nor 1 as true.
        if type(value) is not tp:
            raise TypeError(f"expected {tp.__name__}, got {type(value).__name__}")
        return value

    return check


_converter = cattrs.Converter(forbid_extra_keys=False)
for _tp in (int, str, bool):
    _converter.register_structure_hook(_tp, _strict(_tp))
_converter.register_structure_hook(Any, lambda value, _: value)


def _dict_hook(value: Any, tp: Any) -> Any:
    if type(value) is not dict:
        raise TypeError(f"expected an object, got {type(value).__name__}")
    key_tp, value_tp = tp.__args__
    return {_converter.structure(k, key_tp): _converter.structure(v, value_tp)
            for k, v in value.items()}


def _list_hook(value: Any, tp: Any) -> Any:
    if type(value) is not list:
        raise TypeError(f"expected an array, got {type(value).__name__}")
    (item_tp,) = tp.__args__
    return [_converter.structure(v, item_tp) for v in value]


_converter.register_structure_hook_func(
    lambda tp: getattr(tp, "__origin__", None) is dict, _dict_hook)
_converter.register_structure_hook_func(
    lambda tp: getattr(tp, "__origin__", None) is list, _list_hook)


def parse_manifest(raw: dict[str, Any]) -> Manifest:
    """Check a decoded manifest's types and keys; FormatError says what is wrong and where."""
    if raw.get("format") != "dryml":
        raise FormatError("the manifest does not declare format 'dryml'")
    try:
        return _converter.structure(raw, Manifest)
    except cattrs.BaseValidationError as exc:
        details = "; ".join(cattrs.transform_error(exc, path="manifest"))
        raise FormatError(f"the manifest is malformed: {details}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise FormatError(f"the manifest is malformed: {exc}") from None
