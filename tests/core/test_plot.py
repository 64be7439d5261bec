"""``dryml.plot``: real matplotlib figures (no GUI), checked for what a reader of the chart sees.

Each chart is drawn from a real Repo (or real trained models) and saved as a real PNG; the
assertions read the figure's artists: titles, axis limits, tick labels, colours, direction text.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dryml.data import NumpyDataset
from dryml.errors import BackendUnavailableError, ConfigurationError
from dryml.models import Trainable, supervised_arrays
from dryml.repo import Repo, Selector

PNG = b"\x89PNG\r\n\x1a\n"
ORANGE = "#e6550d"  # the best model's colour (dryml.plot._base.BEST_COLOR)


def _matplotlib() -> None:
    if not os.environ.get("DRYML_REQUIRE_OPTUNA"):  # set where the search extras are installed
        pytest.importorskip("matplotlib")


class Means(Trainable):
    """Nearest class mean; records a loss that falls by ``rate`` per epoch."""

    def __init__(self, rate: float = 0.5, epochs: int = 4) -> None:
        self.rate, self.epochs = rate, epochs
        self.centers: Any = None

    def fit(self, data: Any, valid: Any) -> None:
        x, y = supervised_arrays(data)
        self.centers = np.stack([x[y == c].mean(axis=0) for c in np.unique(y)])
        for epoch in range(self.epochs):
            loss = self.rate ** epoch
            self.train_state.history.append(
                {"epoch": epoch + 1, "loss": loss, "val_loss": loss + 0.1,
                 "val_accuracy": 0.5 + 0.1 * epoch})

    def predict(self, x: Any) -> Any:
        d = -((np.asarray(x)[:, None, :] - self.centers[None]) ** 2).sum(-1)
        return np.exp(d) / np.exp(d).sum(axis=1, keepdims=True)

    def save_object_imp(self, store: Any) -> None:
        store.put("centers", self.centers)

    def load_object_imp(self, store: Any) -> None:
        self.centers = store.get("centers", None)


class Other(Means):
    """A second model class, for grouping by class."""


#: The main job's classification scores: a 0.97-0.98 spread that must be visible.
SCORES = {
    "sklearn random forest": (0.9778, 0.9779, 0.21, 1.9),
    "keras mlp": (0.9750, 0.9748, 0.09, 14.2),
    "torch mlp": (0.9722, 0.9725, 0.10, 9.8),
    "sklearn linear": (0.9694, 0.9690, 0.11, 0.3),
    "xgboost": (0.9667, 0.9668, 0.12, 5.1),
}


def _leaderboard_repo(path: Path) -> Repo:
    repo = Repo(path, create=True)
    for name, (acc, f1, loss, seconds) in SCORES.items():
        repo.add_object(Means(), metadata={
            "name": name, "framework": name.split()[0], "train_seconds": seconds,
            "metrics": {"accuracy": acc, "macro_f1": f1, "log_loss": loss}})
    return repo


def _texts(fig: Any) -> list[str]:
    return [t.get_text().strip() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]


# -- compare: the main job's chart ------------------------------------------------------------

def test_compare_is_a_report_quality_chart(tmp_path: Path) -> None:
    _matplotlib()
    from dryml import plot

    repo = _leaderboard_repo(tmp_path / "repo")
    entries = repo.entries(Selector(Means), order_by="metrics.accuracy", descending=True)
    fig = plot.compare(entries, ["accuracy", "macro_f1", "log_loss"],
                       title="handwritten digits: classification", path=tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG
    assert fig._suptitle.get_text() == "handwritten digits: classification"
    acc, f1, loss, seconds = fig.axes
    # every panel names its metric and its direction
    assert acc.get_title() == "accuracy\n(higher is better)"
    assert f1.get_title() == "macro_f1\n(higher is better)"
    assert loss.get_title() == "log_loss\n(lower is better)"
    assert seconds.get_title() == "training time (s)\n(lower is better)"
    # accuracy never runs past 1, and the 0.9667-0.9778 spread fills most of the axis
    for ax in (acc, f1):
        lo, hi = ax.get_xlim()
        assert 0.9 < lo < 0.9667 and 0.9778 < hi <= 1.0
        assert (0.9778 - 0.9667) / (hi - lo) > 0.4
    assert loss.get_xlim()[0] == 0.0  # zero is near the losses: kept
    # models in the leaderboard's order, the best one's name in bold and its bars orange
    names = [t.get_text() for t in acc.get_yticklabels()]
    assert names == list(SCORES)
    weights = [t.get_fontweight() for t in acc.get_yticklabels()]
    assert weights == ["bold"] + ["normal"] * 4
    for ax in fig.axes:
        colors = [_hex(p.get_facecolor()) for p in ax.patches]
        assert colors[0] == ORANGE and ORANGE not in colors[1:]
    # each value is written on its bar; the panel's best value in bold (log_loss: the lowest)
    assert "0.9778" in _texts(acc) and "0.0900" in _texts(loss)
    bold = [t.get_text().strip() for t in loss.texts if t.get_fontweight() == "bold"]
    assert bold == ["0.0900"]
    assert "orange: best by accuracy" in acc.get_ylabel()
    assert seconds.get_xscale() == "log"  # 0.3 s to 14.2 s


def _hex(rgba: Any) -> str:
    from matplotlib.colors import to_hex

    return str(to_hex(rgba))


def test_compare_from_a_repo_and_from_a_mapping_with_a_note(tmp_path: Path) -> None:
    _matplotlib()
    from dryml import plot

    repo = _leaderboard_repo(tmp_path / "repo")
    fig = plot.compare(repo, ["accuracy"], where={"framework": "sklearn"},
                       title="digits", note="target standardized", seconds=None)
    assert len(fig.axes) == 1  # no time panel when asked for none
    assert fig._suptitle.get_text() == "digits\ntarget standardized"
    assert sorted(t.get_text() for t in fig.axes[0].get_yticklabels()) == [
        "sklearn linear", "sklearn random forest"]
    fig = plot.compare({"ridge": {"r2": 0.41, "mse": 0.52},
                        "forest": {"r2": 0.47, "mse": 0.49}}, best_by="mse")
    r2, mse = fig.axes
    assert r2.get_title() == "r2\n(higher is better)" and r2.get_xlim()[1] <= 1.0
    assert mse.get_title() == "mse\n(lower is better)"
    assert [_hex(p.get_facecolor()) for p in mse.patches] == ["#8da0cb", ORANGE]
    with pytest.raises(ConfigurationError, match=r"no entry has a number at 'acc'.*metrics"
                                                 r"\.accuracy"):
        plot.compare(repo, ["acc"])


# -- a metric per group across Repo entries ---------------------------------------------------

def test_metric_by_group_box_and_strip(tmp_path: Path) -> None:
    _matplotlib()
    from dryml import plot

    repo = Repo(tmp_path / "repo", create=True)
    rng = np.random.default_rng(0)
    for cls, centre in ((Means, 0.975), (Other, 0.95)):
        for _ in range(6):
            repo.add_object(cls(), metadata={"metrics": {"accuracy": centre
                                                         + rng.normal(0, 0.004)}})
    fig = plot.metric_by_group(repo, "accuracy", target=Selector(Trainable),
                               path=tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == PNG
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Means\n(n=6)", "Other\n(n=6)"]
    assert ax.get_ylabel() == "accuracy (higher is better)"
    assert ax.get_xlabel() == "class"
    lo, hi = ax.get_ylim()
    assert lo > 0.9 and hi <= 1.0
    assert fig._suptitle.get_text() == "accuracy by class (12 models)"
    assert len(ax.lines) > 0  # the boxes' whiskers and medians
    colors = [_hex(c) for p in ax.collections for c in p.get_facecolors()]
    assert colors.count(ORANGE) == 1  # the best model's point
    strip = plot.metric_by_group(repo.entries(), "metrics.accuracy", by="class", kind="strip")
    assert len(strip.axes[0].lines) == 0  # points only
    with pytest.raises(ConfigurationError, match="numeric metadata keys: metrics.accuracy"):
        plot.metric_by_group(repo, "loss")


def test_metric_by_group_on_any_metadata_key_or_function(tmp_path: Path) -> None:
    _matplotlib()
    from dryml import plot

    entries = [{"class": "dryml_torch.models:TorchTrainable", "metadata": {"mse": 0.3}},
               {"class": "dryml_torch.models:TorchTrainable", "metadata": {"mse": 0.4}},
               {"class": "dryml_xgboost.models:XGBoostTrainable",
                "metadata": {"mse": 0.2, "framework": "xgboost"}}]
    fig = plot.metric_by_group(entries, "mse", by="framework", title="diabetes")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["torch\n(n=2)", "xgboost\n(n=1)"]
    assert ax.get_ylabel() == "mse (lower is better)" and ax.get_ylim()[0] == 0.0
    fig = plot.metric_by_group(entries, "mse", by=lambda e: len(e["metadata"]),
                               direction="maximize")
    assert fig.axes[0].get_ylabel() == "mse (higher is better)"
    with pytest.raises(ConfigurationError, match="'box' or 'strip'"):
        plot.metric_by_group(entries, "mse", kind="violin")


# -- training histories -----------------------------------------------------------------------

def _data() -> NumpyDataset:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    return NumpyDataset(((rng.normal(size=(60, 2)) + 3 * y[:, None]).astype(np.float32), y),
                        supervised=True)


def test_histories_of_trained_models_and_from_a_repo(tmp_path: Path) -> None:
    _matplotlib()
    from dryml import plot

    fast, slow = Means(rate=0.3), Means(rate=0.8, epochs=6)
    fast.train(_data())
    slow.train(_data())
    fig = plot.histories({"fast": fast, "slow": slow}, title="two runs",
                         path=tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG
    loss, accuracy = fig.axes
    assert loss.get_title() == "loss\n(lower is better)"
    assert accuracy.get_title() == "accuracy\n(higher is better)"
    assert loss.get_xlabel() == "epoch"
    # train solid, validation dashed, one colour per model, each model once in the legend
    styles = [(line.get_linestyle(), len(line.get_xdata())) for line in loss.get_lines()]
    assert styles == [("-", 4), ("--", 4), ("-", 6), ("--", 6)]
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["fast", "slow"]
    assert list(loss.get_lines()[2].get_ydata()) == [0.8 ** e for e in range(6)]
    repo = Repo(tmp_path / "repo", create=True)
    repo.add_object(fast, metadata={"name": "fast"})
    repo.add_object(slow, metadata={"name": "slow"})
    fig = plot.histories(Repo(tmp_path / "repo"), ["loss"], target=Selector(Means))
    assert sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts()) == [
        "fast", "slow"]
    with pytest.raises(ConfigurationError, match="no training history for"):
        plot.histories(Means())
    with pytest.raises(ConfigurationError, match="they hold accuracy, loss"):
        plot.histories(fast, ["mae"])


# -- search: SearchResult.plot draws through dryml.plot ---------------------------------------

def test_search_plot_says_the_direction_and_marks_the_best_trial(tmp_path: Path) -> None:
    _matplotlib()
    from dryml import ObjectDef, plot
    from dryml.search import Float, Search

    result = Search(ObjectDef(Means, rate=Float(0.1, 0.9)), metric="accuracy",
                    repo=tmp_path / "repo", name="p", sampler="random", n_trials=3,
                    seed=0).run(_data())
    png = result.plot(tmp_path / "out" / "history.png")
    assert png.read_bytes()[:8] == PNG
    fig = plot.search_history(result)
    history, rate = fig.axes
    assert history.get_ylabel() == "accuracy (higher is better)"
    assert rate.get_xlabel() == "rate"
    assert history.get_ylim()[1] <= 1.0
    assert fig._suptitle.get_text() == "search 'p': 3 complete trials"


# -- matplotlib is optional -------------------------------------------------------------------

def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, check=False)


def test_import_dryml_plot_does_not_import_matplotlib() -> None:
    proc = _python("""
        import sys
        import dryml.plot
        print("matplotlib" in sys.modules)
        """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_without_matplotlib_a_chart_names_the_extra_to_install() -> None:
    # matplotlib made unimportable in a fresh interpreter, as on an install without the extra
    proc = _python("""
        import sys
        sys.modules["matplotlib"] = None
        from dryml import plot
        from dryml.errors import BackendUnavailableError
        try:
            plot.compare({"a": {"accuracy": 0.9}})
        except BackendUnavailableError as exc:
            print(isinstance(exc, ImportError), exc)
        """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("True dryml.plot needs matplotlib, which is not installed: "
                                  "pip install 'dryml-core[plot]'")
    assert issubclass(BackendUnavailableError, ImportError)
