"""``metric_by_group``: a metric across many saved models, one box (or strip) per group."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dryml.errors import ConfigurationError
from dryml.plot._base import (
    BEST_COLOR,
    COLOR,
    axis_range,
    direction_of,
    direction_text,
    entry_label,
    entry_value,
    finish,
    natural_key,
    new_figure,
    no_values_error,
    repo_entries,
    short_class,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["metric_by_group"]


def metric_by_group(source: Any, metric: str, by: str | Callable[[Mapping[str, Any]], Any]
                    = "class", *, target: Any = None, where: dict[str, Any] | None = None,
                    kind: str = "box", direction: str | None = None, title: str | None = None,
                    path: str | Path | None = None) -> Figure:
    """A metric across saved models, grouped: one box and whisker per group with every model
    as a point on it (``kind="box"``), or the points alone (``kind="strip"``).

    ``source``: a :class:`~dryml.repo.Repo` (``target`` and ``where`` select, as in
    ``Repo.entries``, e.g. a :class:`~dryml.repo.Selector`) or a list of Repo entries.
    ``metric``: a metadata key (``metrics.accuracy``, or ``accuracy`` for short).
    ``by``: ``"class"`` (the model's class, by its short name unless two classes share it:
    then ``module:Class``), ``"framework"`` (metadata ``framework``, else the backend package
    of the class), any dotted metadata key (``params.model``), or a function of the entry.
    Groups are in natural order (``5, 20, 100``; ``forest 5 trees`` before ``forest 20
    trees``) and each group's label says how many models it holds; the axis says whether
    higher or lower is better (``direction=`` for a metric dryml does not know) and the best
    model's point is orange. Entries without the metric are left out. Returns the Figure;
    ``path`` also saves it. Needs ``dryml-core[plot]``.
    """
    if kind not in ("box", "strip"):
        raise ConfigurationError(f"kind={kind!r}: choose 'box' or 'strip'")
    entries = repo_entries(source, target, where)
    groups: dict[str, list[float]] = {}
    for entry in entries:
        value = entry_value(entry, metric)
        if value is not None:
            group = str(entry.get("class", "")) if by == "class" else entry_label(entry, by)
            groups.setdefault(group, []).append(value)
    if not groups:
        if not entries:
            raise ConfigurationError("no models to plot: the selection is empty")
        raise no_values_error(metric, entries)
    resolved = direction_of(metric, {metric: direction} if direction else None)
    shown = _class_names(groups) if by == "class" else {g: g for g in groups}
    names = sorted(groups, key=lambda g: natural_key(shown[g]))
    fig = new_figure(max(4.5, 1.3 * len(names) + 2), 4.2)
    ax = fig.subplots()
    positions = np.arange(1, len(names) + 1)
    if kind == "box":
        ax.boxplot([groups[n] for n in names], positions=positions, widths=0.5,
                   showfliers=False, medianprops={"color": "black"})
    every = [v for n in names for v in groups[n]]
    best = None if resolved is None else (min if resolved == "minimize" else max)(every)
    jitter = np.random.default_rng(0)  # the same picture every time
    for pos, name in zip(positions, names, strict=True):
        values = np.asarray(groups[name])
        xs = pos + jitter.uniform(-0.12, 0.12, len(values))
        colors = [BEST_COLOR if v == best else COLOR for v in values]
        ax.scatter(xs, values, s=22, c=colors, edgecolors="0.25", linewidths=0.5, zorder=3,
                   clip_on=False)
    ax.set_xticks(positions, [f"{shown[n]}\n(n={len(groups[n])})" for n in names])
    ax.set_ylim(*axis_range(every, metric, room=0.15, below=0.15))
    hint = direction_text(resolved)
    ax.set_ylabel(f"{metric} ({hint})" if hint else metric)
    group_name = by if isinstance(by, str) else getattr(by, "__name__", "group")
    ax.set_xlabel(group_name)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.suptitle(title or f"{metric} by {group_name} ({len(every)} models)", fontsize=12)
    return finish(fig, path)


def _class_names(paths: Iterable[str]) -> dict[str, str]:
    """Each class path's short name (``Model``), or the path (``module:Model``) where two
    classes share a short name."""
    short = {path: short_class(path) for path in paths}
    count = Counter(short.values())
    return {path: name if count[name] == 1 else path for path, name in short.items()}
