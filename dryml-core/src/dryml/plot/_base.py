"""What every chart shares: matplotlib on demand, metric directions and ranges, sources."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dryml.errors import BackendUnavailableError, ConfigurationError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BEST_COLOR", "BOUNDS", "COLOR", "EXTRA", "axis_range", "direction_of",
           "direction_text", "entry_label", "entry_value", "finish", "framework_of", "is_better",
           "label_best", "lookup", "natural_key", "new_figure", "no_values_error", "number",
           "repo_entries", "short_class", "unique_names"]

EXTRA = "dryml-core[plot]"
COLOR = "#8da0cb"  #: every bar or point
BEST_COLOR = "#e6550d"  #: the best model's bar
#: What each known metric can reach (None: unbounded on that side).
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "accuracy": (0.0, 1.0), "balanced_accuracy": (0.0, 1.0), "macro_f1": (0.0, 1.0),
    "roc_auc": (0.0, 1.0), "r2": (None, 1.0), "log_loss": (0.0, None), "mse": (0.0, None),
    "mae": (0.0, None), "seconds": (0.0, None), "train_seconds": (0.0, None),
    "loss": (0.0, None),
}
_LOWER = ("seconds", "train_seconds", "loss", "val_loss",
          # XGBoost's eval metrics (its training history's keys)
          "rmse", "rmsle", "mape", "mphe", "logloss", "mlogloss", "error", "merror",
          "poisson-nloglik", "gamma-nloglik", "gamma-deviance", "tweedie-nloglik",
          "cox-nloglik", "aft-nloglik")


def new_figure(width: float, height: float) -> Figure:
    """A Figure that belongs to no GUI and leaves pyplot's backend and state alone;
    BackendUnavailableError naming the extra when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise BackendUnavailableError(
            f"dryml.plot needs matplotlib, which is not installed: pip install '{EXTRA}' "
            "(or pip install matplotlib)") from exc
    return Figure(figsize=(width, height), layout="constrained")


def finish(fig: Figure, path: str | Path | None, dpi: int = 120) -> Figure:
    """Save ``fig`` to ``path`` (folders created; the format from the suffix) when given."""
    if path is not None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=dpi)
    return fig


def direction_of(metric: str, given: Mapping[str, str] | None = None) -> str | None:
    """"maximize", "minimize" or None (unknown) for a metric name (``metrics.`` and ``val_``
    prefixes and an XGBoost ``@threshold`` suffix ignored); ``given`` (name -> direction)
    wins."""
    from dryml.models._spec import higher_is_better
    from dryml.search._trial import MAXIMIZE, MINIMIZE

    if given and metric in given:
        found = given[metric]
        if found not in ("maximize", "minimize"):
            raise ConfigurationError(f"direction of {metric!r} is {found!r}; give 'maximize' "
                                     "or 'minimize'")
        return found
    name = metric.removeprefix("metrics.").removeprefix("val_").partition("@")[0]
    if name in MAXIMIZE or higher_is_better(name):  # the rule EarlyStopping uses
        return "maximize"
    if name in MINIMIZE or name in _LOWER:
        return "minimize"
    return None


def direction_text(direction: str | None) -> str:
    """What a panel says about its metric's direction."""
    return {"maximize": "higher is better", "minimize": "lower is better"}.get(
        direction or "", "")


def is_better(a: float, b: float, direction: str | None) -> bool:
    """Whether ``a`` beats ``b``; never when the direction is unknown (nothing is marked best:
    higher won, and the worst of a metric dryml did not know the direction of was marked)."""
    if direction is None:
        return False
    return a < b if direction == "minimize" else a > b


def axis_range(values: Sequence[float], metric: str, *, room: float = 0.1,
               below: float = 0.8) -> tuple[float, float]:
    """Limits that make the spread of ``values`` visible: zero is kept when it is near
    (relative to the spread), the metric's bounds are not crossed where the values respect
    them (accuracy never runs past 1, but accuracy in percent or a negative loss is shown),
    ``room`` (a fraction of the spread) is left beyond the largest value and ``below``
    under the smallest (bars need length there; points do not)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    spread = high - low or max(abs(high) * 0.02, 1e-3)
    floor, ceiling = BOUNDS.get(metric.removeprefix("metrics.").removeprefix("val_"),
                                (None, None))
    lo = 0.0 if 0 <= low <= spread else low - below * spread
    hi = high + room * spread
    if floor is not None and low >= floor:
        lo = max(lo, floor)
    if ceiling is not None and high <= ceiling:
        hi = min(hi, ceiling)
    if hi <= lo:
        hi = lo + spread
    return lo, hi


def lookup(metadata: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted metadata key (``metrics.accuracy``), or None."""
    value: Any = metadata
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def number(value: Any) -> float | None:
    """``value`` as a float when it is a real number (not a bool: True is no score), else
    None: a missing value (None, text such as ``"nan"``, a list) is not a number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def natural_key(text: str) -> tuple[Any, ...]:
    """Sorts numbers by value (``5 < 20 < 100``, ``1e-05 < 0.001``) before text, and text
    naturally (``forest 5 trees`` before ``forest 20 trees``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isnan(value):
        return (0, value, ())
    parts = re.split(r"(\d+)", text.casefold())
    return (1, 0.0, tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), text)


def entry_value(entry: Mapping[str, Any], key: str) -> float | None:
    """A Repo entry's number at metadata key ``key``, else at ``metrics.<key>`` (also when
    ``key`` holds something else than a number, e.g. ``loss: "huber"`` naming the loss)."""
    meta = entry.get("metadata", {})
    value = number(lookup(meta, key))
    if value is None and not key.startswith("metrics."):
        value = number(lookup(meta, f"metrics.{key}"))
    return value


def short_class(cls_path: str) -> str:
    """``TorchTrainable`` for ``dryml_torch.models:TorchTrainable``."""
    return cls_path.rpartition(":")[2].rpartition(".")[2] or cls_path


def framework_of(cls_path: str) -> str:
    """``torch`` for ``dryml_torch.models:TorchTrainable``; else the top-level module."""
    top = cls_path.partition(":")[0].partition(".")[0]
    return top.removeprefix("dryml_") if top.startswith("dryml_") else top


def entry_label(entry: Mapping[str, Any], key: str | Callable[[Mapping[str, Any]], Any]) -> str:
    """What an entry is called: ``key`` of its metadata, or its class and short id."""
    if callable(key):
        return str(key(entry))
    if key == "class":
        return short_class(str(entry.get("class", "")))
    found = lookup(entry.get("metadata", {}), key)
    if found is None and key == "framework":
        return framework_of(str(entry.get("class", "")))
    if found is None:
        cls = short_class(str(entry.get("class", "object")))
        return f"{cls} {str(entry.get('dry_id', ''))[:8]}".strip()
    return str(found)


def repo_entries(source: Any, target: Any = None, where: dict[str, Any] | None = None
                 ) -> list[dict[str, Any]]:
    """Entries from a Repo (selected by ``target`` and ``where``) or a list of entries."""
    from dryml.repo import Repo

    if isinstance(source, Repo):
        return source.entries(target, where=where)
    if target is not None or where is not None:
        raise ConfigurationError("target= and where= select from a Repo; this source is "
                                 f"{type(source).__name__}")
    if isinstance(source, Mapping) or not isinstance(source, Iterable):
        raise ConfigurationError(
            f"expected a Repo or a list of Repo entries (Repo.entries()), got {source!r:.80}")
    entries = list(source)
    bad = [e for e in entries if not isinstance(e, Mapping) or "metadata" not in e]
    if bad:
        raise ConfigurationError(f"not a Repo entry (a dict with 'metadata'): {bad[0]!r:.80}; "
                                 "use Repo.entries() or Repo.info()")
    return [dict(e) for e in entries]


def no_values_error(metric: str, entries: Sequence[Mapping[str, Any]]) -> ConfigurationError:
    """The error for a metric no entry has, naming the numeric keys that exist."""
    keys: set[str] = set()

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{prefix}{k}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            keys.add(prefix[:-1])

    for entry in entries:
        walk(entry.get("metadata", {}), "")
    known = ", ".join(sorted(keys)[:30]) or "none"
    return ConfigurationError(f"no entry has a number at {metric!r} (nor metrics.{metric}); "
                              f"numeric metadata keys: {known}")


def label_best(texts: Iterable[Any], best: int) -> None:
    """Bold the ``best``-th of ``texts`` (tick labels or value labels)."""
    for i, text in enumerate(texts):
        if i == best:
            text.set_fontweight("bold")


def unique_names(names: list[str]) -> list[str]:
    """``names`` with a repeated one numbered (``mlp``, ``mlp #2``): two models of one name
    had the same label, and which bar or line was which could not be told."""
    out: list[str] = []
    for name in names:
        key, n = name, 1
        while key in out:
            n += 1
            key = f"{name} #{n}"
        out.append(key)
    return out
