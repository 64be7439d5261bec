"""Metadata as a file's manifest and a Repo's index keep it: plain JSON.

``save_object(metadata=)`` and ``Repo.add_object(metadata=)`` check it alike, so a value that
JSON would change (numpy numbers aside, which become their numbers) is refused rather than
stored altered: ``{2: "a", "2": "b"}`` kept only ``"b"``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from dryml.errors import DrymlError

__all__ = ["numpy_as_json", "plain_metadata"]


def numpy_as_json(item: Any) -> Any:
    """``json.dumps``'s ``default=`` for metadata and where-values: numpy scalars and arrays
    are their numbers (``np.int64(3)`` is ``3``); anything else is not plain JSON."""
    if isinstance(item, (np.generic, np.ndarray)):
        return item.tolist()
    raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")


def plain_metadata(metadata: Any, error: type[DrymlError]) -> tuple[str, dict[str, Any]]:
    """``metadata`` as JSON text and the dict that text reads back as (non-string keys become
    strings, numpy numbers Python ones). ``error`` when it is no dict, not plain JSON (NaN and
    infinity included), or when two keys of one dict become one JSON key."""
    if not isinstance(metadata, dict):
        raise error(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        text = json.dumps(metadata, allow_nan=False, default=numpy_as_json)
    except RecursionError:
        raise error("metadata nests too deeply to be JSON") from None
    except (TypeError, ValueError) as exc:
        why = ("NaN and infinity are not JSON: store None, or a string such as 'nan'"
               if "Out of range float" in str(exc) else str(exc))
        raise error(f"metadata must be plain JSON (dicts, lists, str, numbers, bool, None): "
                    f"{why}") from None
    plain: dict[str, Any] = json.loads(text)
    _refuse_merged_keys(metadata, plain, error)
    return text, plain


def _refuse_merged_keys(given: Any, plain: Any, error: type[DrymlError]) -> None:
    """``error`` when two keys of one dict become one JSON key (``1`` and ``"1"``, ``True``
    and ``"true"``): JSON keeps the last, and the other value would be lost without a word.
    ``plain`` is ``given`` read back from JSON: the same shape, but for lost keys."""
    stack = [(given, plain)]
    while stack:
        a, b = stack.pop()
        if isinstance(a, dict):
            if len(a) != len(b):
                named: dict[str, list[str]] = {}
                for key in a:
                    named.setdefault(json.dumps({key: 0})[2:-4], []).append(repr(key))
                keys = next(k for k in named.values() if len(k) > 1)
                raise error(f"metadata keys {' and '.join(keys)} of one dict are one key in "
                            "JSON, which keeps only the last value: rename one")
            stack.extend(zip(a.values(), b.values(), strict=True))
        elif isinstance(a, (list, tuple)):
            stack.extend(zip(a, b, strict=True))
