"""Helpers of :mod:`dryml_sklearn.models`: estimator class lookup, building, data as arrays."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from dryml.errors import ConfigurationError, UntrustedClassError

__all__ = ["estimator_class"]

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
