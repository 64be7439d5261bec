"""Dicts inside scikit-learn estimators, as a dryml save writes them.

skops writes a dict's keys as JSON text with their types and rebuilds each key by calling
its type on the text: ``bool("false")`` is ``True``, so ``{False: 2.0, True: 1.0}`` (a
``class_weight`` over boolean labels, a ``DictVectorizer`` vocabulary) came back as
``{True: 1.0}``, and keys that read alike as text (``1`` and ``"1"``) merge. Such a dict is
refused during a dryml save (:mod:`dryml_sklearn._skops_refuse`), naming the fix; other dicts
keep skops' own getter, as does every other user of skops in the process.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dryml_sklearn._skops_import import import_skops

import_skops()  # before any skops.io module: see dryml_sklearn._skops_import

from dryml_sklearn._skops_refuse import during_save, refuse_when  # noqa: E402

__all__ = ["install"]

_installed = False


def _plain(key: Any) -> Any:
    return key.item() if isinstance(key, np.generic) else key


def _why(obj: dict[Any, Any]) -> str | None:
    """Why skops cannot give ``obj`` back as it is (None: it can)."""
    keys = [_plain(k) for k in obj]
    odd = [k for k in keys if k is None or isinstance(k, bool)]
    if odd:
        return (f"a dict with the key {odd[0]!r} cannot be saved exactly (skops writes keys "
                "as text and bool('False') is True, so False came back as True and entries "
                "were lost): use int keys, e.g. class_weight={0: w0, 1: w1} with integer "
                "labels (y.astype(int))")
    if len({str(k) for k in keys}) < len(keys):
        return (f"a dict whose keys read alike as text ({sorted(map(repr, keys))[:4]}) cannot "
                "be saved exactly (skops writes keys as text, and they would merge): give "
                "the keys one type")
    return None


def install() -> None:
    """Register the dict check, once."""
    global _installed
    if not _installed:
        refuse_when(dict, _why, during_save)
        _installed = True
