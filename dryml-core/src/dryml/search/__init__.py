"""Hyperparameter search over definitions (see docs/search.md).

Put markers (:class:`Float`, :class:`Int`, :class:`Choice`) anywhere inside an ``ObjectDef``'s
arguments and run a :class:`Search`: every trial trains in its framework's compute context and
is kept in a Repo with its params and metrics, and a search killed half-way resumes by name.
"""

from __future__ import annotations

from dryml.search._markers import Choice, Float, Int
from dryml.search._ray_tune import collect_tune, tune_search
from dryml.search._report import TrialPruned, report_epoch
from dryml.search._result import SearchResult
from dryml.search._samplers import Asked, GridSampler, RandomSampler, Sampler, TrialInfo
from dryml.search._search import Search
from dryml.search._space import Param, Space

__all__ = ["Asked", "Choice", "Float", "GridSampler", "Int", "Param", "RandomSampler",
           "Sampler", "Search", "SearchResult", "Space", "TrialInfo", "TrialPruned",
           "collect_tune", "report_epoch", "tune_search"]
