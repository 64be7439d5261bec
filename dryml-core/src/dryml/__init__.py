"""dryml: Don't Repeat Yourself Machine Learning.

Define models and data steps as :class:`Object` s that remember how they were built, save them
to one safe ``.dry`` file, load them back, rebuild them from an :class:`ObjectDef`, and keep
them in a ``Repo``. Framework support comes from backend packages (``dryml-tf``,
``dryml-torch``, ``dryml-sklearn``, ``dryml-xgboost``) found through the ``dryml``
entry-point group; this package never imports a framework.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dryml import errors
from dryml._object import Object
from dryml._objectdef import ObjectDef
from dryml._version import __version__
from dryml.hookspecs import hookimpl

if TYPE_CHECKING:
    from dryml._io import load_object, save_object
    from dryml.repo import Repo, Selector

__all__ = [
    "Object",
    "ObjectDef",
    "Repo",
    "Selector",
    "__version__",
    "errors",
    "hookimpl",
    "load_object",
    "save_object",
]

# Heavier pieces load on first use so that `import dryml` stays fast.
_LAZY = {
    "save_object": ("dryml._io", "save_object"),
    "load_object": ("dryml._io", "load_object"),
    "Repo": ("dryml.repo", "Repo"),
    "Selector": ("dryml.repo", "Selector"),
}
_LAZY_MODULES = frozenset(
    {"backend", "context", "data", "format", "hookspecs", "metrics", "models", "plugins", "records",
     "repo", "testing"}
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"dryml.{name}")
    else:
        raise AttributeError(f"module 'dryml' has no attribute {name!r}")
    globals()[name] = value
    return value
