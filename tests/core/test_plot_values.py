"""``dryml.plot`` on awkward values: NaN, None or text scores, values outside a metric's
range, models that lack a metric, many models, many groups.

As in ``test_plot.py``, the assertions read what a reader of the chart sees: bar colours,
tick labels, line data, legend texts, axis limits, and the error a user gets.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from dryml.errors import ConfigurationError

ORANGE = "#e6550d"  # the best model's colour (dryml.plot._base.BEST_COLOR)
BLUE = "#8da0cb"  # every other bar (dryml.plot._base.COLOR)
NAN = float("nan")

pytest.importorskip("matplotlib")


def _hex(rgba: Any) -> str:
    from matplotlib.colors import to_hex

    return str(to_hex(rgba))


def _colors(ax: Any) -> list[str]:
    return [_hex(p.get_facecolor()) for p in ax.patches]


def _bold(ax: Any) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels() if t.get_fontweight() == "bold"]


def _entry(name: str, cls: str = "m:A", **metadata: Any) -> dict[str, Any]:
    return {"class": cls, "dry_id": f"{name:0>12}"[:12], "metadata": {"name": name, **metadata}}


# -- compare ----------------------------------------------------------------------------------

@pytest.mark.parametrize("diverged", [NAN, "nan"])
def test_compare_a_nan_score_is_never_the_best(diverged: Any) -> None:
    from dryml import plot

    fig = plot.compare({"diverged": {"accuracy": diverged}, "good": {"accuracy": 0.90},
                        "bad": {"accuracy": 0.50}}, seconds=None)
    (ax,) = fig.axes
    assert _colors(ax) == [BLUE, ORANGE, BLUE]
    assert _bold(ax) == ["good"]
    assert ax.get_ylabel() == "orange: best by accuracy"


def test_compare_knows_dryml_s_metric_names_and_marks_no_best_when_it_cannot_tell() -> None:
    """Results keyed by mean_squared_error (dryml.metrics.mean_squared_error.__name__) marked
    the worst model best, since an unknown direction counted as higher-is-better (found by
    the metrics audit)."""
    from dryml import plot

    scores = {"good": {"mean_squared_error": 0.01}, "bad": {"mean_squared_error": 9.0}}
    (ax,) = plot.compare(scores, seconds=None).axes
    assert _colors(ax) == [ORANGE, BLUE] and _bold(ax) == ["good"]
    assert ax.get_title() == "mean_squared_error\n(lower is better)"
    (ax,) = plot.compare({"a": {"speedup": 1.5}, "b": {"speedup": 3.0}}, seconds=None).axes
    assert _colors(ax) == [BLUE, BLUE] and _bold(ax) == []
    assert [t.get_fontweight() for t in ax.texts] == ["normal", "normal"]  # no value bold
    assert ax.get_ylabel() == ("no best marked: is speedup better higher or lower? "
                               "(directions={'speedup': 'maximize'})")
    (ax,) = plot.compare({"a": {"speedup": 1.5}, "b": {"speedup": 3.0}}, seconds=None,
                         directions={"speedup": "maximize"}).axes
    assert _colors(ax) == [BLUE, ORANGE]


def test_compare_metrics_default_to_every_model_s_metrics() -> None:
    from dryml import plot

    # as Repo.entries() gives them: a model not scored yet, a NaN stored as "nan"
    entries = [_entry("baseline, not scored yet"), _entry("a", metrics={"accuracy": 0.9}),
               _entry("b", metrics={"accuracy": "nan", "macro_f1": 0.8})]
    fig = plot.compare(entries, seconds=None)
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == ["accuracy", "macro_f1"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        "baseline, not scored yet", "a", "b"]
    assert _colors(fig.axes[0]) == [BLUE, ORANGE, BLUE]
    with pytest.raises(ConfigurationError, match=r"metrics=\[\] names none; pass "
                                                 r"metrics=\[\.\.\.\]"):
        plot.compare({"a": {"accuracy": 0.9}}, [])
    with pytest.raises(ConfigurationError, match=r"no model has a numeric metric; pass "
                                                 r"metrics=\[\.\.\.\].*or store numeric"):
        plot.compare([_entry("x"), _entry("y", metrics={"accuracy": None})])


def test_compare_best_by_any_metadata_key_or_a_clear_error() -> None:
    from dryml import plot

    entries = [_entry("slow", train_seconds=3.0, metrics={"accuracy": 0.9}),
               _entry("fast", train_seconds=1.0, metrics={"accuracy": 0.8})]
    fig = plot.compare(entries, ["accuracy"], best_by="train_seconds")
    accuracy, seconds = fig.axes
    assert _colors(accuracy) == [BLUE, ORANGE] and _colors(seconds) == [BLUE, ORANGE]
    assert _bold(accuracy) == ["fast"]
    assert accuracy.get_ylabel() == "orange: best by train_seconds"
    with pytest.raises(ConfigurationError, match=r"best_by='acuracy': no entry has a number "
                                                 r"at 'acuracy'.*keys: metrics.accuracy, "
                                                 r"train_seconds"):
        plot.compare(entries, ["accuracy"], best_by="acuracy")
    with pytest.raises(ConfigurationError, match=r"best_by='f1': no model has a finite "
                                                 r"number.*\['accuracy', 'f1'\]"):
        plot.compare({"a": {"accuracy": 0.9}, "b": {"accuracy": 0.8, "f1": NAN}},
                     best_by="f1")


def test_compare_none_or_text_scores_of_a_mapping_are_missing() -> None:
    from dryml import plot

    fig = plot.compare({"a": {"accuracy": 0.9, "log_loss": None, "ok": True},
                        "b": {"accuracy": 0.8, "log_loss": "n/a"},
                        "c": {"accuracy": 0.7, "log_loss": 0.3}}, seconds=None)
    accuracy, log_loss = fig.axes  # no panel for a bool: True is no score
    assert log_loss.get_title() == "log_loss\n(lower is better)"
    widths = [p.get_width() for p in log_loss.patches]
    assert widths[:2] == [0.0, 0.0] and widths[2] > 0  # a and b have no bar
    assert [t.get_text().strip() for t in log_loss.texts] == ["0.3000"]
    assert _colors(accuracy) == [ORANGE, BLUE, BLUE]


# -- axis ranges and metadata values ----------------------------------------------------------

def test_axes_show_values_outside_a_metric_s_usual_range() -> None:
    from dryml import plot

    # a negative loss (Keras' CosineSimilarity, a Gaussian NLL) and accuracy in percent
    fig = plot.compare({"a": {"loss": -0.9}, "b": {"loss": -0.6}}, seconds=None)
    lo, hi = fig.axes[0].get_xlim()
    assert lo < -0.9 and hi > -0.6
    ends = [p.get_x() + p.get_width() for p in fig.axes[0].patches]
    assert ends == pytest.approx([-0.9, -0.6])
    fig = plot.compare({"a": {"accuracy": 97.8}, "b": {"accuracy": 96.7}}, seconds=None)
    lo, hi = fig.axes[0].get_xlim()
    assert lo < 96.7 and hi > 97.8
    entries = [_entry("a", metrics={"loss": -0.9}), _entry("b", metrics={"loss": -0.6})]
    lo, hi = plot.metric_by_group(entries, "loss").axes[0].get_ylim()
    assert lo < -0.9 and hi > -0.6
    # values within the range still keep to it
    fig = plot.compare({"a": {"accuracy": 0.99}, "b": {"accuracy": 0.98}}, seconds=None)
    assert fig.axes[0].get_xlim()[1] <= 1.0


def test_a_text_value_at_the_top_level_falls_back_to_metrics() -> None:
    from dryml import plot

    entries = [_entry("h", "m:Huber", loss="huber", metrics={"loss": 0.2}),
               _entry("p", "m:Plain", metrics={"loss": 0.5})]
    fig = plot.metric_by_group(entries, "loss")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [
        "Huber\n(n=1)", "Plain\n(n=1)"]
    assert fig._suptitle.get_text() == "loss by class (2 models)"
    points = sorted(float(v) for c in fig.axes[0].collections for v in c.get_offsets()[:, 1])
    assert points == [0.2, 0.5]


# -- metric_by_group --------------------------------------------------------------------------

def _groups(fig: Any) -> list[str]:
    return [t.get_text().split("\n")[0] for t in fig.axes[0].get_xticklabels()]


def test_groups_are_in_natural_order() -> None:
    from dryml import plot

    entries = [_entry(f"forest {trees} trees", params={"trees": trees, "lr": lr},
                      metrics={"accuracy": acc})
               for trees, lr, acc in ((5, 0.1, 0.80), (100, 1e-05, 0.90), (20, 0.001, 0.85),
                                      (50, 0.01, 0.88))]
    assert _groups(plot.metric_by_group(entries, "accuracy", by="params.trees")) == [
        "5", "20", "50", "100"]
    assert _groups(plot.metric_by_group(entries, "accuracy", by="name")) == [
        "forest 5 trees", "forest 20 trees", "forest 50 trees", "forest 100 trees"]
    assert _groups(plot.metric_by_group(entries, "accuracy", by="params.lr")) == [
        "1e-05", "0.001", "0.01", "0.1"]


def test_classes_with_the_same_name_stay_apart() -> None:
    from dryml import plot

    entries = [_entry("a", "exp_cnn.models:Model", metrics={"accuracy": 0.8}),
               _entry("b", "exp_mlp.models:Model", metrics={"accuracy": 0.9}),
               _entry("c", "exp_mlp.models:Model", metrics={"accuracy": 0.7}),
               _entry("d", "dryml_torch.models:TorchTrainable", metrics={"accuracy": 0.85})]
    fig = plot.metric_by_group(entries, "accuracy")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [
        "exp_cnn.models:Model\n(n=1)", "exp_mlp.models:Model\n(n=2)", "TorchTrainable\n(n=1)"]


# -- histories --------------------------------------------------------------------------------

def _lines(ax: Any) -> list[tuple[str, list[float], list[float]]]:
    return [(line.get_linestyle(), [float(x) for x in line.get_xdata()],
             [float(y) for y in line.get_ydata()]) for line in ax.get_lines()]


def test_histories_legend_names_every_model_of_any_panel() -> None:
    from dryml import plot

    keras = [{"epoch": 1, "loss": 1.0, "accuracy": 0.6}, {"epoch": 2, "loss": 0.6,
                                                         "accuracy": 0.7}]
    xgb = [{"round": 1, "mlogloss": 1.2, "loss": 1.2}, {"round": 2, "mlogloss": 0.9,
                                                         "loss": 0.9}]
    fig = plot.histories({"keras": keras, "xgboost": xgb, "_base": keras},
                         ["accuracy", "loss"])
    accuracy, loss = fig.axes
    legend = accuracy.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["keras", "xgboost", "_base"]
    assert [_hex(h.get_color()) for h in legend.legend_handles] == [
        _hex(line.get_color()) for line in loss.get_lines()]


def test_histories_of_many_models_have_distinct_colours() -> None:
    from dryml import plot

    runs = {f"seed {i}": [{"epoch": 1, "loss": 1.0 + i}, {"epoch": 2, "loss": 0.5 + i}]
            for i in range(11)}
    (ax,) = plot.histories(runs, ["loss"]).axes
    assert len({_hex(line.get_color()) for line in ax.get_lines()}) == 11
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(runs)
    assert len({_hex(h.get_color()) for h in legend.legend_handles}) == 11


def test_histories_with_none_text_or_missing_steps() -> None:
    from dryml import plot

    run = [{"epoch": 1, "loss": 1.0, "val_loss": None, "phase": "warmup", "best": True},
           {"epoch": 2, "loss": 0.5, "val_loss": 0.7, "phase": "main", "best": False},
           {"loss": 0.4, "val_loss": "n/a"}]  # no epoch: its position
    fig = plot.histories({"run": run})
    (ax,) = fig.axes  # no panel for the text or bool columns
    assert ax.get_title() == "loss\n(lower is better)"
    solid, dashed = _lines(ax)
    assert solid == ("-", [1.0, 2.0, 3.0], [1.0, 0.5, 0.4])
    assert dashed[0] == "--" and dashed[1] == [1.0, 2.0, 3.0]
    assert math.isnan(dashed[2][0]) and dashed[2][1] == 0.7 and math.isnan(dashed[2][2])
    with pytest.raises(ConfigurationError, match="no history holds numbers for 'phase'; "
                                                 "they hold loss"):
        plot.histories({"run": run}, ["phase"])


def test_histories_directions_of_xgboost_and_your_own_metrics() -> None:
    from dryml import plot

    hist = [{"round": r, "mlogloss": 1.0 / r, "merror": 0.2 / r, "auc": 1 - 0.1 / r,
             "error@0.7": 0.1 / r, "score": 3.0 * r} for r in (1, 2)]
    fig = plot.histories({"xgboost": hist}, directions={"score": "minimize"})
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == [
        "auc\n(higher is better)", "error@0.7\n(lower is better)",
        "merror\n(lower is better)", "mlogloss\n(lower is better)",
        "score\n(lower is better)"]
    with pytest.raises(ConfigurationError, match="direction of 'score' is 'down'"):
        plot.histories({"xgboost": hist}, directions={"score": "down"})


# -- search_history ---------------------------------------------------------------------------

def test_search_history_of_a_choice_mixing_numbers_with_none_or_text(tmp_path: Path) -> None:
    from dryml.search import SearchResult

    def trial(number: int, value: float, **params: Any) -> dict[str, Any]:
        return {"number": number, "params": params, "values": [value], "status": "complete",
                "metrics": {}, "seconds": 1.0, "dry_id": f"{number:012d}", "error": None}

    trials = [trial(0, 0.61, depth=None, act="relu", lr=1e-3),
              trial(1, 0.58, depth=8, act="tanh", lr=1e-1),
              trial(2, 0.55, depth=2, act="relu", lr=1e-2),
              trial(3, 0.57, depth="auto", act="relu", lr=1e-4)]
    result = SearchResult(None, "s", trials, ["minimize"], ["log_loss"])
    assert result.plot(tmp_path / "history.png").read_bytes()[:4] == b"\x89PNG"
    from dryml import plot

    history, act, depth, lr = plot.search_history(result).axes
    assert history.get_ylabel() == "log_loss (lower is better)"
    assert [ax.get_xlabel() for ax in (act, depth, lr)] == ["act", "depth", "lr"]
    assert [t.get_text() for t in depth.get_xticklabels()] == ["2", "8", "auto", "None"]
    assert [list(map(float, p)) for p in depth.collections[0].get_offsets()] == [
        [3.0, 0.61], [1.0, 0.58], [0.0, 0.55], [2.0, 0.57]]
    colors = [_hex(c) for c in depth.collections[0].get_facecolors()]
    assert colors == [BLUE, BLUE, ORANGE, BLUE]  # depth=2 won
    assert [t.get_text() for t in act.get_xticklabels()] == ["relu", "tanh"]
    assert lr.get_xscale() == "log"


def test_search_history_marks_the_best_trial_alone(tmp_path: Path) -> None:
    """Every trial whose first value equalled the best was orange: a tie, and a trial the
    best one dominates on the second metric (best_trial is trial 2)."""
    from dryml import plot
    from dryml.search import SearchResult

    trials = [{"number": n, "params": {"w": float(n)}, "values": values, "status": "complete",
               "metrics": {}, "seconds": 1.0, "dry_id": f"{n:012d}", "error": None}
              for n, values in ((0, [0.5, 1.0]), (1, [0.9, 3.0]), (2, [0.9, 1.0]))]
    result = SearchResult(None, "s", trials, ["maximize", "minimize"], ["accuracy", "loss"])
    assert result.best_trial["number"] == 2
    history, w = plot.search_history(result).axes
    assert [_hex(c) for c in history.collections[0].get_facecolors()] == [BLUE, BLUE, ORANGE]
    assert [_hex(c) for c in w.collections[0].get_facecolors()] == [BLUE, BLUE, ORANGE]


def test_compare_writes_small_and_close_values_apart_and_numbers_repeated_names() -> None:
    """Values were written with 4 decimals: errors of 4e-5, 1e-5 and 2.5e-5 all read 0.0000
    (the best one in bold too), and 0.99991 and 0.99994 alike; times under 0.05 s read
    0.0 s. Two models of one name had the same label."""
    from dryml import plot

    fig = plot.compare({"a": {"mse": 4e-5}, "b": {"mse": 1e-5}, "c": {"mse": 2.5e-5}},
                       seconds={"a": 0.04, "b": 0.02, "c": 1.0})
    mse, seconds = fig.axes
    assert [t.get_text().strip() for t in mse.texts] == ["0.000040", "0.000010", "0.000025"]
    assert [t.get_text().strip() for t in seconds.texts] == ["0.04 s", "0.02 s", "1.00 s"]
    close = plot.compare([_entry("mlp", metrics={"accuracy": 0.99991}),
                          _entry("mlp", metrics={"accuracy": 0.99994})], seconds=None)
    (accuracy,) = close.axes
    assert [t.get_text().strip() for t in accuracy.texts] == ["0.99991", "0.99994"]
    assert [t.get_text() for t in accuracy.get_yticklabels()] == ["mlp", "mlp #2"]
    assert [t.get_text().strip() for t in plot.compare(
        {"a": {"accuracy": 0.9778}, "b": {"accuracy": 0.09}}, seconds=None).axes[0].texts] == [
        "0.9778", "0.0900"]
