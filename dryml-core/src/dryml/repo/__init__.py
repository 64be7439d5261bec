"""Repositories of saved Objects and the Selectors that query them.

>>> from dryml.repo import Repo, Selector, In, Range, Not

See ``docs/repo.md``. A :class:`Repo` is a directory of ``.dry`` files with an SQLite index;
a :class:`Selector` picks objects by class and constructor arguments, and ``In``, ``Range``
and ``Not`` stand for argument (or metadata) values.
"""

from __future__ import annotations

from dryml.repo._check import CheckReport
from dryml.repo._lazy import is_loaded, load_now
from dryml.repo._maintenance import Duplicate, ReindexReport
from dryml.repo._match import In, Matcher, Not, Range
from dryml.repo._repo import Repo
from dryml.repo._selector import Selector

__all__ = ["CheckReport", "Duplicate", "In", "Matcher", "Not", "Range", "ReindexReport", "Repo",
           "Selector", "is_loaded", "load_now"]
