"""``compare``: one horizontal bar chart per metric, plus training time, best model marked."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

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
    is_better,
    label_best,
    lookup,
    new_figure,
    no_values_error,
    number,
    repo_entries,
    unique_names,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["compare"]


@attrs.frozen
class _Row:
    label: str
    scores: dict[str, float]
    seconds: float | None
    ranked: float | None = None  #: the number at ``best_by`` (when given)


def compare(results: Any, metrics: Sequence[str] | None = None, *, target: Any = None,
            where: dict[str, Any] | None = None, label: str = "name",
            seconds: str | Mapping[str, float] | None = "train_seconds",
            directions: Mapping[str, str] | None = None, best_by: str | None = None,
            title: str | None = None, note: str | None = None,
            path: str | Path | None = None) -> Figure:
    """A comparison chart of models: one panel of horizontal bars per metric, then a panel of
    training time (when known), models in the order given (a leaderboard's order).

    ``results``: a :class:`~dryml.repo.Repo` (``target``/``where`` select, as in
    ``Repo.entries``), a list of Repo entries, or a mapping ``{model label: {metric: value}}``.
    Entries are named by their metadata key ``label`` (else class and short id) and scored at
    ``metrics.<metric>``; ``metrics`` defaults to every numeric metric of any model, in order
    of first appearance. A value that is not a number (None, text such as ``"nan"``) is
    missing: that model has no bar in that panel.
    ``seconds``: the metadata (or score) key holding training seconds, or a mapping
    ``{label: seconds}``; None leaves the time panel out.

    Each panel says whether higher or lower is better (from the metric's name, or
    ``directions={"metric": "maximize" | "minimize"}``) and zooms to the values' spread within
    the metric's range (accuracy never past 1). The best model by ``best_by`` (default: the
    first metric; any metric or metadata key, e.g. ``train_seconds``) is drawn in orange with
    a bold name in every panel; only a finite value can be best, and none is marked for a
    metric whose direction is neither known from its name nor given in ``directions``.
    ``title`` heads the figure (name the data set and task); ``note`` is a smaller line under
    it (e.g. how the target was scaled). Returns the matplotlib Figure; ``path`` also saves it
    (PNG, SVG, PDF by suffix). Needs ``dryml-core[plot]``.
    """
    rows = _rows(results, target, where, label, seconds, metrics, best_by)
    rows = [attrs.evolve(r, label=name)
            for r, name in zip(rows, unique_names([r.label for r in rows]), strict=True)]
    if not rows:
        raise ConfigurationError("nothing to compare: the source holds no models")
    names = list(metrics) if metrics is not None else list(
        dict.fromkeys(k for r in rows for k in r.scores))
    if not names:
        why = "metrics=[] names none" if metrics is not None else "no model has a numeric metric"
        raise ConfigurationError(f"no metric to compare: {why}; pass metrics=[...] naming what "
                                 "to draw, or store numeric metrics (metadata 'metrics': "
                                 "{'accuracy': 0.9})")
    missing = [m for m in names if all(m not in r.scores for r in rows)]
    if missing and not isinstance(results, Mapping):
        raise no_values_error(missing[0], repo_entries(results, target, where))
    if missing:
        raise ConfigurationError(f"no model has a value for {missing[0]!r}; metrics given: "
                                 f"{sorted({k for r in rows for k in r.scores})}")
    key = best_by or names[0]
    key_dir = direction_of(key, directions)
    ranks = [r.ranked if best_by else r.scores.get(key) for r in rows]
    ranked = {i: v for i, v in enumerate(ranks) if v is not None and math.isfinite(v)}
    if best_by and not ranked:
        raise _no_best(best_by, results, target, where, rows)
    best = next(iter(ranked), -1) if key_dir is not None else -1
    for i, v in ranked.items():
        if best >= 0 and is_better(v, ranked[best], key_dir):
            best = i
    timed = [r.seconds for r in rows if r.seconds is not None]
    panels = len(names) + (1 if timed else 0)
    fig = new_figure(3.6 * panels + 1.6, 1.6 + 0.42 * len(rows))
    axes = fig.subplots(1, panels, sharey=True, squeeze=False)[0]
    labels = [r.label for r in rows]
    for ax, name in zip(axes, names, strict=False):
        values = [r.scores.get(name, float("nan")) for r in rows]
        _panel(ax, labels, values, name, direction_of(name, directions), best,
               f"{{:.{_decimals(values, 4, 2)}f}}")
    if timed:
        values = [float("nan") if r.seconds is None else r.seconds for r in rows]
        _panel(axes[-1], labels, values, "training time (s)", "minimize", best,
               f"{{:.{_decimals(values, 1, 1)}f}} s",
               log=min(timed) > 0 and max(timed) / min(timed) > 30)
    axes[0].invert_yaxis()
    label_best(axes[0].get_yticklabels(), best)
    if best >= 0:
        axes[0].set_ylabel(f"orange: best by {key}")
    elif key_dir is None:
        axes[0].set_ylabel(f"no best marked: is {key} better higher or lower? "
                           f"(directions={{{key!r}: 'maximize'}})")
    fig.suptitle("\n".join(t for t in (title or f"{len(rows)} models compared", note) if t),
                 fontsize=12)
    return finish(fig, path)


def _decimals(values: list[float], least: int, digits: int, most: int = 10) -> int:
    """Decimals, ``least`` to ``most``, that write each value with ``digits`` significant
    digits at least and different values differently (a fixed 4 wrote errors of 4e-5 and
    1e-5 both as 0.0000, and accuracies 0.99991 and 0.99994 alike)."""
    finite = [v for v in values if v == v and math.isfinite(v)]
    places = least
    while places < most and (
            any(0 < abs(v) < 10 ** (digits - 1 - places) for v in finite)
            or len({f"{v:.{places}f}" for v in finite}) < len(set(finite))):
        places += 1
    return places


def _panel(ax: Axes, labels: list[str], values: list[float], name: str,
           direction: str | None, best: int, fmt: str, log: bool = False) -> None:
    """One metric's bars, its direction in the title, the best model's bar in orange."""
    if log:
        ax.set_xscale("log")
        finite = [v for v in values if v == v and v > 0]
        lo, hi = min(finite) / 2, max(finite) * 1.3
    else:
        lo, hi = axis_range(values, name, room=0.06)
    ys = range(len(labels))
    widths = [v - lo if v == v else 0.0 for v in values]
    colors = [BEST_COLOR if i == best else COLOR for i in ys]
    ax.barh(list(ys), widths, left=lo, color=colors, height=0.7)
    ax.set_yticks(list(ys), labels)
    ax.set_xlim(lo, hi)
    if lo < 0 < hi:
        ax.axvline(0, color="0.3", linewidth=0.8)
    texts = []
    for y, v in zip(ys, values, strict=True):
        if v != v:  # NaN: a model without this value gets no bar and no label
            continue
        # the value at the bar's end: inside it, or just outside a short one
        short = (_scale(ax, v) - _scale(ax, lo)) / (_scale(ax, hi) - _scale(ax, lo)) < 0.4
        texts.append(ax.text(v, y, (" " + fmt.format(v)) if short else (fmt.format(v) + " "),
                             ha="left" if short else "right", va="center", fontsize=8))
    # this panel's best value in bold (the orange bar is the best model by ``best_by``)
    shown = [v for v in values if v == v]
    top = shown[0] if shown and direction is not None else None  # unknown: none bold
    for v in shown:
        if top is not None and is_better(v, top, direction):
            top = v
    label_best(texts, shown.index(top) if top is not None else -1)
    hint = direction_text(direction)
    ax.set_title(f"{name}\n({hint})" if hint else name, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)


def _scale(ax: Axes, value: float) -> float:
    """``value`` where the axis draws it (log axes: its logarithm)."""
    return math.log10(value) if ax.get_xscale() == "log" else value


def _no_best(best_by: str, results: Any, target: Any, where: dict[str, Any] | None,
             rows: Sequence[_Row]) -> ConfigurationError:
    """The error for a ``best_by`` no model has a finite number at."""
    if not isinstance(results, Mapping):
        found = no_values_error(best_by, repo_entries(results, target, where))
        return ConfigurationError(f"best_by={best_by!r}: {found}")
    keys = sorted({k for r in rows for k in r.scores})
    return ConfigurationError(f"best_by={best_by!r}: no model has a finite number there; "
                              f"pass best_by= one of the scores given: {keys}")


def _rows(results: Any, target: Any, where: dict[str, Any] | None, label: str,
          seconds: str | Mapping[str, float] | None, wanted: Sequence[str] | None,
          best_by: str | None) -> list[_Row]:
    """The models to draw, from a Repo, its entries or a mapping of scores (only numbers:
    None or text is a missing value, as the Repo stores a NaN)."""
    taken: float | None
    if isinstance(results, Mapping):
        if target is not None or where is not None:
            raise ConfigurationError("target= and where= select from a Repo; results is a "
                                     "mapping of scores")
        rows = []
        for name, scores in results.items():
            given = dict(scores)
            values = {k: n for k, v in given.items() if (n := number(v)) is not None}
            taken = values.pop(seconds, None) if isinstance(seconds, str) else None
            if isinstance(seconds, Mapping):
                taken = number(seconds.get(name))
            ranked = number(given.get(best_by)) if best_by else None
            rows.append(_Row(str(name), values, taken, ranked))
        return rows
    rows = []
    for entry in repo_entries(results, target, where):
        name = entry_label(entry, label)
        metrics = lookup(entry.get("metadata", {}), "metrics")
        values = {k: n for k, v in (metrics if isinstance(metrics, Mapping) else {}).items()
                  if (n := number(v)) is not None}
        for key in wanted or ():  # a metric kept elsewhere in the metadata
            found = entry_value(entry, key)
            if key not in values and found is not None:
                values[key] = found
        taken = None
        if isinstance(seconds, str):
            taken = entry_value(entry, seconds)
        elif isinstance(seconds, Mapping):
            taken = number(seconds.get(name))
        ranked = None
        if best_by:
            ranked = values[best_by] if best_by in values else entry_value(entry, best_by)
        rows.append(_Row(name, values, taken, ranked))
    return rows
