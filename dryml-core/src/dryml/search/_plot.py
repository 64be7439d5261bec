"""``SearchResult.plot``: the optimization history and the value against each parameter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_history"]


def plot_history(result: Any, path: Path) -> Path:
    """A PNG with the value of each complete trial and the best so far, then one scatter per
    numeric parameter (value against the parameter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in result.trials if t["status"] == "complete" and t["values"]]
    numeric = sorted({k for t in done for k, v in t["params"].items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)})
    panels = 1 + len(numeric)
    cols = min(4, panels)
    rows = -(-panels // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.6 * rows), squeeze=False)
    axes = [list(grid.flat)]
    for ax in axes[0][panels:]:
        ax.set_visible(False)
    maximize = result.directions[0] == "maximize"
    numbers = [t["number"] for t in done]
    values = [t["values"][0] for t in done]
    best: list[float] = []
    for v in values:
        best.append(v if not best else (max if maximize else min)(best[-1], v))
    ax = axes[0][0]
    ax.scatter(numbers, values, s=14, label="trial")
    ax.step(numbers, best, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(result.metric_names[0])
    ax.set_title(f"search {result.name}")
    ax.legend()
    for ax, name in zip(axes[0][1:panels], numeric, strict=True):
        points = [(t["params"][name], t["values"][0]) for t in done if name in t["params"]]
        xs = [p[0] for p in points]
        ax.scatter(xs, [p[1] for p in points], s=14)
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(result.metric_names[0])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
