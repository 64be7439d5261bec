"""scikit-learn estimators as Object constructor arguments (``Model(LogisticRegression(C=2))``).

The estimator is written exactly as the store serializer writes it (skops, with big arrays as
``.npy`` members inside a file; inline base64 outside one) and read back under the same trust
rules. Two estimators are equal as arguments when they are of the same class with equal
parameters (``get_params(deep=False)``, nested estimators compared the same way): an argument
is configuration; fitted state is what ``store.put`` is for.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import numpy as np

from dryml.errors import FormatError
from dryml_sklearn import _skops_arrays
from dryml_sklearn._paths import is_xgboost, nested_xgboost
from dryml_sklearn._serializers import load_estimator, record_versions

__all__ = ["ESTIMATOR_ARG", "EstimatorCodec"]


class EstimatorCodec:
    """A scikit-learn estimator (``sklearn.base.BaseEstimator``) as an argument."""

    def check(self, value: Any) -> None:
        """Every estimator can be recorded (skops refuses what it cannot describe at save),
        but XGBoost's: dryml keeps XGBoost models only in XGBoost's own format, checked before
        XGBoost reads it, which skops' data cannot hold (written anyway, the argument could
        never be loaded)."""
        where = "the estimator" if is_xgboost(value) else nested_xgboost(value)
        if where is not None:
            raise ValueError(
                f"an XGBoost model cannot be a constructor argument ({where}: dryml keeps "
                "XGBoost models only in XGBoost's own format); pass its parameters (and build "
                "it in __init__), or store the model with store.put in save_object_imp")

    def encode(self, value: Any, writer: Any | None) -> Any:
        """skops' description of the estimator: a member in a file, base64 outside one."""
        if writer is not None:
            record_versions(writer)
        data, _ = _skops_arrays.dumps(value, writer)
        if writer is not None:
            return {"skops": writer.add_bytes(data)}
        return {"b64": base64.b64encode(data).decode("ascii")}

    def decode(self, data: Any, reader: Any | None) -> Any:
        """The estimator back (UntrustedClassError for types outside the trusted set)."""
        if isinstance(data, dict) and isinstance(data.get("skops"), str) and reader is not None:
            return load_estimator(reader.get_bytes(data["skops"]), reader)
        if isinstance(data, dict) and isinstance(data.get("b64"), str):
            return load_estimator(base64.b64decode(data["b64"], validate=True), reader)
        raise FormatError("a scikit-learn argument must hold a skops member or base64 data")

    def copy(self, value: Any) -> Any:
        """An independent deep copy (fitted state included)."""
        return copy.deepcopy(value)

    def equal(self, a: Any, b: Any) -> bool:
        """Same class and equal parameters."""
        return _equal(a, b)


def _equal(a: Any, b: Any) -> bool:
    if hasattr(a, "get_params") and hasattr(b, "get_params"):
        return type(a) is type(b) and _equal(a.get_params(deep=False),
                                             b.get_params(deep=False))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(
            _equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                and a.dtype == b.dtype and a.shape == b.shape
                and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # both NaN
    try:
        return type(a) is type(b) and bool(a == b)
    except (TypeError, ValueError):
        return a is b


ESTIMATOR_ARG = EstimatorCodec()
