"""Charts of results across many trainings (needs ``pip install 'dryml-core[plot]'``).

* :func:`compare`: a bar chart per metric (and training time) of a set of models, the best
  one marked: the main job's chart.
* :func:`metric_by_group`: a metric across saved models, one box (or strip) per group (model
  class, framework, any metadata key), from a Repo and a Selector or a list of entries.
* :func:`histories`: training curves from ``train_state.history`` of one or many models.
* :func:`search_history`: a search's optimization history (``SearchResult.plot``).

Every function returns a matplotlib ``Figure`` (made without pyplot, so no GUI backend is
touched) and saves it when given ``path=``. matplotlib is imported only when a chart is drawn;
without it the call raises :class:`~dryml.errors.BackendUnavailableError` naming the extra.
See ``docs/plot.md``.
"""

from __future__ import annotations

from dryml.plot._compare import compare
from dryml.plot._groups import metric_by_group
from dryml.plot._history import histories
from dryml.plot._search import search_history

__all__ = ["compare", "histories", "metric_by_group", "search_history"]
