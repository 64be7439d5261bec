"""Hyperparameter search over definitions (see docs/search.md).

Put markers (:class:`Float`, :class:`Int`, :class:`Choice`) anywhere inside an ``ObjectDef``'s
arguments and run a :class:`Search`: every trial trains in its framework's compute context and
is kept in a Repo with its params and metrics.
"""

from __future__ import annotations

from dryml.search._markers import Choice, Float, Int
from dryml.search._space import Param, Space

__all__ = ["Choice", "Float", "Int", "Param", "Space"]
