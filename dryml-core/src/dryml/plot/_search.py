"""``search_history``: a search's optimization history and its value against each parameter."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dryml.plot._base import (
    BEST_COLOR,
    COLOR,
    axis_range,
    direction_text,
    finish,
    natural_key,
    new_figure,
    number,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["search_history"]


def search_history(result: Any, path: str | Path | None = None) -> Figure:
    """The value of each complete trial with the best so far, then one scatter per parameter
    (value against the parameter): a numeric one (every value a number) on a number axis, a
    log axis when it spans more than 20x; any other (text, None, bools, or a mix) with one
    column per value, in natural order. The best trial is orange and every panel says
    whether higher or lower is better.

    ``result``: a :class:`~dryml.search.SearchResult` (``SearchResult.plot`` calls this).
    Returns the Figure; ``path`` also saves it. Needs ``dryml-core[plot]``.
    """
    done = [t for t in result.trials if t["status"] == "complete" and t["values"]]
    params = sorted({k for t in done for k in t["params"]})
    numeric = {k for k in params
               if all(number(t["params"][k]) is not None for t in done if k in t["params"])}
    panels = 1 + len(params)
    cols = min(4, panels)
    rows = -(-panels // cols)
    fig = new_figure(4.5 * cols, 3.6 * rows + 0.4)
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for ax in axes[panels:]:
        ax.set_visible(False)
    maximize = result.directions[0] == "maximize"
    metric = result.metric_names[0]
    ylabel = f"{metric} ({direction_text(result.directions[0])})"
    numbers = [t["number"] for t in done]
    values = [t["values"][0] for t in done]
    best: list[float] = []
    for v in values:
        best.append(v if not best else (max if maximize else min)(best[-1], v))
    # the best trial alone (as result.best_trial ranks: ties by trial number, then by the
    # next metrics): coloured by its value, a tie and a dominated trial were orange too
    winner = result.best_trial["number"] if done else None
    colors = [BEST_COLOR if n == winner else COLOR for n in numbers]
    limits = axis_range(values, metric, room=0.15, below=0.15) if values else None
    ax = axes[0]
    ax.scatter(numbers, values, s=16, c=colors, edgecolors="0.25", linewidths=0.5,
               label="trial", zorder=3)
    ax.step(numbers, best, where="post", color=BEST_COLOR, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(ylabel)
    ax.set_title("optimization history")
    ax.legend(fontsize=8)
    for ax, name in zip(axes[1:panels], params, strict=True):
        points = [(t["params"][name], t["values"][0], t["number"]) for t in done
                  if name in t["params"]]
        if name in numeric:
            xs = [float(p[0]) for p in points]
        else:  # categorical: a column per value
            kinds = sorted({str(p[0]) for p in points}, key=natural_key)
            xs = [float(kinds.index(str(p[0]))) for p in points]
            ax.set_xticks(range(len(kinds)), [k if len(k) <= 24 else f"{k[:23]}\u2026"
                                              for k in kinds])  # long reprs: cut
            ax.set_xlim(-0.5, len(kinds) - 0.5)
        ax.scatter(xs, [p[1] for p in points], s=16, zorder=3, edgecolors="0.25",
                   linewidths=0.5, c=[BEST_COLOR if p[2] == winner else COLOR for p in points])
        if name in numeric and xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(ylabel)
    for ax in axes[:panels]:
        if limits is not None:
            ax.set_ylim(*limits)
        ax.grid(alpha=0.3)
    fig.suptitle(f"search {result.name!r}: {len(done)} complete trials", fontsize=12)
    return finish(fig, path, dpi=100)
