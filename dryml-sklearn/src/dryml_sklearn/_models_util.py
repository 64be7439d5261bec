"""Helpers of :mod:`dryml_sklearn.models`: estimator class lookup, building, data as arrays."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import numpy as np

from dryml.errors import ConfigurationError, DatasetError, UntrustedClassError

__all__ = ["as_arrays", "estimator_class", "split_off"]

#: rows per batch when gathering an unbatched Dataset into arrays
_CHUNK = 8192


def _trusted_prefixes() -> tuple[str, ...]:
    """Module prefixes the installed plugins trust (scikit-learn's estimator families,
    ``xgboost.sklearn``...), from the ``dryml_trusted_modules`` hook."""
    from dryml.plugins import get_plugin_manager

    return tuple(str(entry) for _, entry in
                 get_plugin_manager().records("dryml_trusted_modules"))


def _split_path(path: str) -> tuple[str, str]:
    """``"module:Qual"`` or ``"package.module.Class"`` -> (module, qualname)."""
    if ":" in path:
        module, _, name = path.partition(":")
    else:
        module, _, name = path.rpartition(".")
    if not module or not name:
        raise ConfigurationError(
            f"estimator class {path!r} must be a dotted path such as "
            "'sklearn.ensemble.RandomForestClassifier' (or 'module:Class')")
    return module, name


def estimator_class(path: str) -> type:
    """The scikit-learn estimator class ``path`` names.

    The module must be one the installed dryml plugins trust (scikit-learn's estimator
    families, ``xgboost.sklearn``) or already imported in this process: a definition read from
    a file never makes dryml import arbitrary modules.
    """
    from sklearn.base import BaseEstimator

    module, name = _split_path(path)
    if module not in sys.modules and not any(
            module == p or module.startswith(p + ".") for p in _trusted_prefixes()):
        raise UntrustedClassError(
            f"estimator class {path!r}: module {module!r} is not trusted by any dryml plugin "
            "and is not imported; use a class from scikit-learn's estimator modules (e.g. "
            "'sklearn.linear_model.LogisticRegression', 'xgboost.sklearn.XGBClassifier'), or "
            "import your module before training")
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"estimator class {path!r} cannot be found: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, BaseEstimator)):
        raise ConfigurationError(
            f"{path!r} is not a scikit-learn estimator class (a BaseEstimator subclass)")
    return obj


def as_arrays(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of every example of a supervised Dataset (any framework) as numpy arrays."""
    ds = data.numpy()
    if ds.indexed:
        ds = ds.as_not_indexed()
    if not ds.supervised:
        raise DatasetError("training needs a supervised Dataset of (x, y) elements; use "
                           "NumpyDataset((x, y), supervised=True) or .as_supervised()")
    if not ds.batched:  # whole batches cut from the arrays: ~80x faster than row by row
        ds = ds.batch(_CHUNK)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for x, y in ds:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    if not xs:
        raise DatasetError("the training Dataset has no examples")
    return np.concatenate(xs), np.concatenate(ys)


def split_off(x: np.ndarray, y: np.ndarray, fraction: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random ``fraction`` of the examples (chosen with ``seed``) as validation data:
    ``(x_train, y_train, x_valid, y_valid)``."""
    n = len(x)
    n_valid = round(n * fraction)
    if n_valid < 1 or n_valid >= n:
        raise ConfigurationError(
            f"validation_split={fraction} of {n} examples leaves no training or no "
            "validation examples; change validation_split or pass validation data")
    order = np.random.default_rng(seed).permutation(n)
    train, valid = np.sort(order[n_valid:]), np.sort(order[:n_valid])
    return x[train], y[train], x[valid], y[valid]
