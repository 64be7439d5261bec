"""``histories``: training curves (loss and metrics per epoch) of one or many models."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dryml.errors import ConfigurationError
from dryml.plot._base import (
    direction_of,
    direction_text,
    entry_label,
    finish,
    new_figure,
    number,
    unique_names,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

__all__ = ["histories"]

_STEPS = ("epoch", "round", "step")


def histories(models: Any, metrics: Sequence[str] | None = None, *, target: Any = None,
              label: str = "name", directions: Mapping[str, str] | None = None,
              title: str | None = None, path: str | Path | None = None) -> Figure:
    """Training curves: one panel per metric (``loss`` first), one colour per model (more than
    ten models: colours spread over a colormap), the training value solid and the validation
    value (``val_<metric>``) dashed; the first panel's legend names every model.

    ``models``: a trained :class:`~dryml.models.Trainable`, a list of them, a mapping
    ``{label: Trainable or history}`` (a history is ``train_state.history``: one dict per
    epoch), or a :class:`~dryml.repo.Repo` with ``target`` selecting the models (named by their
    metadata key ``label``; loading them needs their backends). ``metrics`` defaults to every
    metric the histories hold numbers for; a value that is not a number (None, text) is a gap
    in its curve. The x axis is the epoch (XGBoost: the boosting round; a row without it: its
    position); each panel says whether lower or higher is better (from the metric's name, or
    ``directions={"metric": "maximize" | "minimize"}``). Returns the Figure; ``path`` also
    saves it. Needs ``dryml-core[plot]``.
    """
    curves = _curves(models, target, label)
    if not curves:
        raise ConfigurationError("no models to plot")
    empty = [name for name, rows in curves.items() if not rows]
    if empty:
        raise ConfigurationError(f"no training history for {', '.join(empty)}: train the "
                                 "model first (its train_state.history is empty)")
    found = {k.removeprefix("val_") for rows in curves.values() for row in rows
             for k, v in row.items() if k not in _STEPS and number(v) is not None}
    names = list(metrics) if metrics is not None else sorted(
        found, key=lambda k: (k != "loss", k))
    unknown = [m for m in names if m not in found]
    if unknown:
        raise ConfigurationError(f"no history holds numbers for {unknown[0]!r}; they hold "
                                 f"{', '.join(sorted(found))}")
    cols = min(3, len(names))
    rows_n = -(-len(names) // cols)
    fig = new_figure(4.6 * cols, 3.4 * rows_n + 0.5)
    grid = fig.subplots(rows_n, cols, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    steps: set[str] = set()
    colors = _colors(len(curves))
    handles: dict[str, Line2D] = {}  # each model's first line, for the legend
    for ax, name in zip(axes, names, strict=False):
        for (model, rows), color in zip(curves.items(), colors, strict=True):
            step = next((s for s in _STEPS if any(s in r for r in rows)), None)
            steps.add(step or "epoch")
            for key, style in ((name, "-"), (f"val_{name}", "--")):
                points = [(_step(r, step, i), _value(r[key]))
                          for i, r in enumerate(rows) if key in r]
                if any(math.isfinite(y) for _, y in points):
                    (line,) = ax.plot(*zip(*points, strict=True), style, color=color,
                                      label=model)
                    handles.setdefault(model, line)
        hint = direction_text(direction_of(name, directions))
        ax.set_title(f"{name}\n({hint})" if hint else name, fontsize=10)
        ax.set_xlabel(" / ".join(sorted(steps)))
        ax.grid(alpha=0.3)
    named = [m for m in curves if m in handles]
    axes[0].legend([handles[m] for m in named], named, fontsize=7)
    fig.suptitle(title or "training history (solid: train, dashed: validation)", fontsize=12)
    return finish(fig, path)


def _colors(n: int) -> list[str]:
    """A colour per model: matplotlib's ten (C0-C9), or for more models as many distinct
    colours spread over the turbo colormap."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return [to_hex(colormaps["turbo"](i / (n - 1))) for i in range(n)]


def _step(row: Mapping[str, Any], step: str | None, index: int) -> float:
    """Where a history row goes on the x axis: its step (epoch, round), else its position."""
    found = number(row.get(step)) if step else None
    return index + 1 if found is None else found


def _value(value: Any) -> float:
    """A history value as a float; NaN (a gap in the curve) when it is not a number."""
    found = number(value)
    return math.nan if found is None else found


def _curves(models: Any, target: Any, label: str) -> dict[str, list[dict[str, Any]]]:
    """``{label: history}`` from the accepted forms of ``models`` (repeated labels numbered)."""
    from dryml._object import Object
    from dryml.repo import Repo

    pairs: list[tuple[str, list[dict[str, Any]]]]
    if isinstance(models, Repo):
        pairs = [(entry_label(e, label), _history(models.load(e["dry_id"])))
                 for e in models.entries(target)]
    elif target is not None:
        raise ConfigurationError("target= selects from a Repo; models is "
                                 f"{type(models).__name__}")
    elif isinstance(models, Object):
        pairs = [(_name(models), _history(models))]
    elif isinstance(models, Mapping):
        pairs = [(str(k), _history(v)) for k, v in models.items()]
    elif isinstance(models, Sequence) and not isinstance(models, str):
        if models and all(isinstance(r, Mapping) for r in models):
            pairs = [("model", _history(models))]  # one history
        else:
            pairs = [(_name(m), _history(m)) for m in models]
    else:
        raise ConfigurationError(f"expected Trainables, histories or a Repo, got {models!r:.80}")
    keys = unique_names([name for name, _ in pairs])
    return {key: rows for key, (_, rows) in zip(keys, pairs, strict=True)}


def _name(model: Any) -> str:
    """``TorchTrainable 1a2b3c4d``: a model's class and short id."""
    return f"{type(model).__name__} {str(getattr(model, 'dry_id', ''))[:8]}".strip()


def _history(item: Any) -> list[dict[str, Any]]:
    """A model's ``train_state.history``, or a history given as is."""
    state = getattr(item, "train_state", None)
    if state is not None:
        return [dict(r) for r in state.history]
    if isinstance(item, Sequence) and all(isinstance(r, Mapping) for r in item):
        return [dict(r) for r in item]
    raise ConfigurationError(f"not a Trainable nor a history (a list of dicts): {item!r:.80}")
