"""Helpers of :mod:`dryml_sklearn.models`: estimator class lookup, building, data as arrays."""

from __future__ import annotations

import sys
from typing import Any

from dryml.backend import TrustPolicy, static_attribute
from dryml.errors import ConfigurationError, UntrustedClassError

__all__ = ["estimator_class"]

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
    policy = TrustPolicy()
    if module not in sys.modules and not policy.module_trusted(module):
        raise UntrustedClassError(
            f"estimator class {path!r}: module {module!r} is not trusted by any dryml plugin "
            "and is not imported; use a class from scikit-learn's estimator modules (e.g. "
            "'sklearn.linear_model.LogisticRegression', 'xgboost.sklearn.XGBClassifier'), or "
            "import your module before training")
    # The path may come from a file: the module is imported only under the trust rules (a
    # declared family's own module, never a test module or an entry point such as
    # 'dryml.cli.__main__'), and the class is looked up without running code
    obj: Any = static_attribute(policy.import_named(module), name)
    if obj is None:
        raise ConfigurationError(f"estimator class {path!r} cannot be found: module "
                                 f"{module!r} defines no {name!r}")
    if not (isinstance(obj, type) and issubclass(obj, BaseEstimator)):
        raise ConfigurationError(
            f"{path!r} is not a scikit-learn estimator class (a BaseEstimator subclass)")
    return obj
