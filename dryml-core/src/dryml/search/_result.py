"""What a search gives back: the trials table, the best trial, the Pareto front, plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dryml.errors import ObjectNotFoundError, RepoError

__all__ = ["SearchResult", "leaderboard_text", "metric_columns", "pareto_front", "seconds_cell",
           "trial_row"]


def _dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    sign = [1.0 if d == "maximize" else -1.0 for d in directions]
    ge = all(s * x >= s * y for s, x, y in zip(sign, a, b, strict=True))
    gt = any(s * x > s * y for s, x, y in zip(sign, a, b, strict=True))
    return ge and gt


def pareto_front(trials: list[dict[str, Any]], directions: list[str]) -> list[dict[str, Any]]:
    """The complete trials no other complete trial beats on every objective."""
    done = [t for t in trials if t["status"] == "complete" and t["values"]]
    return [t for t in done
            if not any(_dominates(o["values"], t["values"], directions) for o in done)]


def rank_key(values: list[float], directions: list[str]) -> tuple[float, ...]:
    """Sorts trials best first: by the first objective, ties broken by the next ones (each
    in its own direction), so that the best of a multi-objective search is on its Pareto
    front; trials equal in every objective keep their order."""
    return tuple(-v if d == "maximize" else v for v, d in zip(values, directions, strict=False))


def ranked(trials: list[dict[str, Any]], directions: list[str]) -> list[dict[str, Any]]:
    """Complete trials, best first (see :func:`rank_key`)."""
    done = [t for t in trials if t["status"] == "complete" and t["values"]]
    return sorted(done, key=lambda t: rank_key(t["values"], directions))


def leaderboard_text(name: str, trials: list[dict[str, Any]], directions: list[str],
                     metric_names: list[str], top: int = 10) -> str:
    """A plain-text table of the best trials."""
    rows = ranked(trials, directions)[:top]
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    lines = [f"search {name!r}: {len(trials)} trials ({summary or 'none'})"]
    if not rows:
        return "\n".join(lines)
    head, widths = metric_columns(metric_names)
    lines.append(f"{'rank':<5}{'trial':>6}{head}{'seconds':>9}  params")
    for rank, t in enumerate(rows, 1):
        lines.append(f"{rank:<5}{trial_row(t, t['values'], widths)}")
    return "\n".join(lines)


def metric_columns(names: list[str]) -> tuple[str, list[int]]:
    """The header of the metric columns and their widths: each at least 14 and wide enough
    for its name and a space (longer names ran into each other: 'balanced_accuracymean_...')."""
    widths = [max(14, len(name) + 2) for name in names]
    return "".join(f"{name:>{w}}" for name, w in zip(names, widths, strict=True)), widths


def trial_row(trial: dict[str, Any], values: list[Any], widths: list[int]) -> str:
    """A trial's number, metric values, seconds and params as a table row."""
    shown = "".join(_value_cell(v, w) for v, w in zip(values, widths, strict=True))
    params = ", ".join(f"{k}={_short(v)}" for k, v in trial["params"].items())
    return f"{trial['number']:>6}{shown}{seconds_cell(trial['seconds'])}  {params}"


def _value_cell(value: Any, width: int) -> str:
    """A metric value in full where it fits (0.9 and 0.90000000001 rank apart, and shown
    with 6 digits they read the same), else with 6 significant digits; '-' for none."""
    value = _number(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{'-':>{width}}"
    text = repr(float(value)) if isinstance(value, float) else str(value)
    if len(text) >= width:
        text = f"{value:.6g}"
    return f"{text:>{width}}"


def seconds_cell(seconds: Any) -> str:
    """A trial's seconds, '-' when it has none (a trial that failed before it ran)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return f"{'-':>9}"
    return f"{seconds:>9.2f}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _number(value: Any) -> Any:
    """A metric as a number: the Repo's JSON keeps NaN and infinities as text."""
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return value


class SearchResult:
    """The outcome of a search, read from its Repo.

    ``trials`` is the table (one dict per trial: number, params, metrics, values, status,
    seconds, dry_id, error); ``best`` loads the best trial's trained model; ``pareto`` is the
    Pareto front of a multi-objective search.
    """

    def __init__(self, repo: Any, name: str, trials: list[dict[str, Any]],
                 directions: list[str], metric_names: list[str],
                 stopped: str | None = None) -> None:
        self.repo, self.name, self.trials = repo, name, trials
        self.directions, self.metric_names, self.stopped = directions, metric_names, stopped

    @property
    def best_trial(self) -> dict[str, Any]:
        """The best complete trial: by the first objective, ties broken by the next ones."""
        rows = ranked(self.trials, self.directions)
        if not rows:
            raise ObjectNotFoundError(f"search {self.name!r} has no complete trial")
        return rows[0]

    @property
    def best_params(self) -> dict[str, Any]:
        """The params of the best trial."""
        return dict(self.best_trial["params"])

    @property
    def best_value(self) -> float:
        """The first objective's value of the best trial."""
        return float(self.best_trial["values"][0])

    @property
    def best(self) -> Any:
        """The best trial's trained model, loaded from the Repo."""
        trial = self.best_trial
        if not trial["kept"]:
            raise RepoError(f"the model of trial {trial['number']} was not kept (keep=...)")
        return self.repo.load(trial["dry_id"])

    @property
    def pareto(self) -> list[dict[str, Any]]:
        """The trials on the Pareto front (every objective, each in its direction)."""
        return pareto_front(self.trials, self.directions)

    def to_frame(self) -> Any:
        """The trials as a pandas DataFrame (one column per param and per metric, and per entry
        of a pruned or failed trial's ``last_epoch`` logs; a diverged
        trial's metric, kept as the text ``"nan"`` or ``"inf"`` in the Repo's JSON, is the
        float again, so the columns sort and compare)."""
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]

        rows = [{"number": t["number"], "status": t["status"], "seconds": t["seconds"],
                 **{f"params.{k}": v for k, v in t["params"].items()},
                 **{f"metrics.{k}": _number(v) for k, v in t["metrics"].items()},
                 **{f"last_epoch.{k}": _number(v)
                    for k, v in (t.get("last_epoch") or {}).items()},
                 "dry_id": t["dry_id"], "error": t["error"]} for t in self.trials]
        return pd.DataFrame(rows)

    def leaderboard(self, top: int = 10) -> str:
        """The best trials as a text table."""
        return leaderboard_text(self.name, self.trials, self.directions, self.metric_names, top)

    def plot(self, path: str | Path) -> Path:
        """Write a PNG: the optimization history (value per trial, best so far) and the value
        against each parameter (:func:`dryml.plot.search_history`). Needs
        ``dryml-core[plot]``."""
        from dryml.plot import search_history

        search_history(self, path)
        return Path(path)

    def __repr__(self) -> str:
        return f"SearchResult({self.name!r}, {len(self.trials)} trials)"
