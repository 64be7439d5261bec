"""Where an object sits inside a scikit-learn value, as a path a user can read
(``steps[0][1].func.keywords['f']``): for refusals at save (an XGBoost model inside a
Pipeline, a function no file may hold) that say which part to change."""

from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np

__all__ = ["XGBOOST_INSTEAD", "is_xgboost", "nested_xgboost", "path_to"]


#: What to do instead of an XGBoost model inside a scikit-learn object (refusal messages).
XGBOOST_INSTEAD = (
    "dryml keeps XGBoost models only in XGBoost's own format, checked before XGBoost reads "
    "it, which a scikit-learn object's skops data cannot hold (saved that way, it could never "
    "be loaded again). Save the XGBoost model on its own (store.put), or chain the steps: "
    "Pipe(SklearnTrainable(Estimator(...), task='transformer'), XGBoostTrainable(...)) from "
    "dryml.models and dryml_xgboost.models")
_LEAVES = (np.ndarray, np.generic, str, bytes, int, float, complex, type(None))


def is_xgboost(obj: Any) -> bool:
    """Whether ``obj`` is an object of XGBoost's (its class comes from the ``xgboost``
    package)."""
    module = type(obj).__module__ or ""
    return module == "xgboost" or module.startswith("xgboost.")


def nested_xgboost(value: Any) -> str | None:
    """Where inside ``value`` (not ``value`` itself) an XGBoost object sits, e.g.
    ``"steps[1][1] (xgboost.sklearn.XGBClassifier)"``, or None. Costs nothing when XGBoost is
    not imported: nothing can hold one then."""
    if "xgboost" not in sys.modules:
        return None

    found = _find(value, is_xgboost)
    if found is None:
        return None
    obj, path = found
    return f"{path} ({type(obj).__module__}.{type(obj).__qualname__})"


def path_to(value: Any, target: Any) -> str | None:
    """Where inside ``value`` the object ``target`` sits (object arrays searched too), e.g.
    ``"steps[0][1].missing_values"``, or None."""
    found = _find(value, lambda obj: obj is target, arrays=True)
    return None if found is None else found[1]


def _find(value: Any, match: Any, arrays: bool = False) -> tuple[Any, str] | None:
    """The first object below ``value`` that ``match`` accepts, with its path."""
    seen = {id(value)}
    stack = list(_children(value, "", arrays))
    while stack:
        obj, path = stack.pop()
        if id(obj) in seen or (isinstance(obj, _LEAVES) and not (
                arrays and isinstance(obj, np.ndarray) and obj.dtype.hasobject)):
            continue
        seen.add(id(obj))
        if match(obj):
            return obj, path.lstrip(".")
        stack.extend(_children(obj, path, arrays))
    return None


def _children(obj: Any, path: str, arrays: bool = False) -> list[tuple[Any, str]]:
    if arrays and isinstance(obj, np.ndarray):
        return [(v, f"{path}[{', '.join(map(str, i))}]") for i, v in np.ndenumerate(obj)]
    if isinstance(obj, dict):
        return [(v, f"{path}[{k!r}]") for k, v in obj.items()]
    if isinstance(obj, (list, tuple)):
        return [(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return [(v, f"{path} (a member of the set)") for v in obj]
    if isinstance(obj, functools.partial):  # skops writes its function and arguments
        return [(obj.func, f"{path}.func"),
                *((v, f"{path}.args[{i}]") for i, v in enumerate(obj.args)),
                *((v, f"{path}.keywords[{k!r}]") for k, v in obj.keywords.items())]
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict):
        return [(v, f"{path}.{k}") for k, v in attributes.items()]
    return []
