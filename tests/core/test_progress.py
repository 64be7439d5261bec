"""dryml.progress in one process: the plain lines, the switches, the shared wording."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator

import pytest

from dryml import progress
from dryml._progress_board import Board
from dryml.context import compute_context
from dryml.errors import DrymlWarning

CLOCK = r"\d+:\d\d"


@pytest.fixture
def out(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    monkeypatch.delenv("DRYML_PROGRESS", raising=False)
    monkeypatch.delenv("DRYML_PROGRESS_INTERVAL", raising=False)
    stream = io.StringIO()
    progress.configure(stream=stream)
    yield stream
    progress.reset()


def test_a_pipe_gets_plain_lines_at_start_and_end(out: io.StringIO) -> None:
    with progress.track("mlp", framework="torch", total=5) as bar:
        for epoch in range(5):
            bar.update(epoch + 1, {"loss": 0.5, "val_loss": 0.25})
        bar.status("early stopping after epoch 5")
    progress.status("[dryml] finished mlp")
    lines = out.getvalue().splitlines()
    assert lines[0] == "mlp · torch: started (5 epochs)"
    assert lines[1] == "mlp · torch: early stopping after epoch 5"
    assert re.fullmatch(rf"mlp · torch: finished at epoch 5/5 in {CLOCK}, "
                        r"loss=0\.5 val_loss=0\.25", lines[2]), lines[2]
    assert lines[3:] == ["[dryml] finished mlp"]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_periodic_lines_come_at_most_every_interval(out: io.StringIO) -> None:
    progress.configure(interval=0)
    with progress.track("trees", framework="xgboost", total=3, unit="round") as bar:
        for i in range(3):
            bar.update(i + 1, {"val_rmse": 1.5})
    lines = out.getvalue().splitlines()
    assert lines[0] == "trees · xgboost: started (3 rounds)"
    assert re.fullmatch(rf"trees · xgboost: round 1/3, val_rmse=1\.5, {CLOCK}, ETA {CLOCK}",
                        lines[1]), lines[1]
    assert len(lines) == 4 and lines[3].startswith("trees · xgboost: finished at round 3/3")

    out.truncate(0), out.seek(0)
    progress.configure(interval=3600)
    with progress.track("trees", framework="xgboost", total=3, unit="round") as bar:
        for i in range(3):
            bar.update(i + 1)
    assert [line.split(":")[1] for line in out.getvalue().splitlines()] == [
        " started (3 rounds)", " finished at round 3/3 in 0"]


def test_off_draws_no_track_but_keeps_status_lines(out: io.StringIO,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRYML_PROGRESS", "off")
    with progress.track("mlp", framework="tf", total=2) as bar:
        bar.update(2)
        bar.status("early stopping after epoch 2")
    progress.status("[dryml] done")
    assert out.getvalue().splitlines() == ["mlp · tf: early stopping after epoch 2",
                                           "[dryml] done"]


@pytest.mark.parametrize("value", ["0", "false", "No"])
def test_the_usual_words_for_off_turn_progress_off(out: io.StringIO, value: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRYML_PROGRESS", value)
    with progress.track("mlp", framework="tf", total=2) as bar:
        bar.update(2)
    assert out.getvalue() == ""


def test_an_unknown_progress_setting_warns_and_is_taken_as_auto(
        out: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRYML_PROGRESS", "quiet-please")
    with (pytest.warns(DrymlWarning, match=r"DRYML_PROGRESS='quiet-please' is not one of .*auto"),
          progress.track("mlp", framework="tf", total=2) as bar):
        bar.update(2)
    assert "mlp · tf: started" in out.getvalue()  # auto on a stream that is not a terminal


def test_a_failing_training_says_so_on_its_last_line(out: io.StringIO) -> None:
    with pytest.raises(ValueError), progress.track("mlp", framework="tf", total=4) as bar:
        bar.update(1)
        raise ValueError("nan loss")
    assert out.getvalue().splitlines()[-1].startswith(
        "mlp · tf: failed: ValueError at epoch 1/4 in ")


def test_a_trial_the_pruner_stopped_says_pruned_not_failed(out: io.StringIO) -> None:
    """Its line said "failed: TrialPruned", though the search records it as pruned."""
    from dryml.search._report import TrialPruned

    with pytest.raises(TrialPruned), progress.track("mlp", framework="torch", total=4) as bar:
        bar.update(1)
        raise TrialPruned("pruned at epoch 1")
    assert out.getvalue().splitlines()[-1].startswith("mlp · torch: pruned at epoch 1/4 in ")


def test_a_terminal_gets_the_live_display_unless_plain_is_forced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    leader, follower = os.openpty()
    try:
        with open(follower, "w", closefd=False) as tty:
            board = Board()
            board.configure(None, tty, None)
            monkeypatch.delenv("DRYML_PROGRESS", raising=False)
            assert board.mode() == "live"
            monkeypatch.setenv("DRYML_PROGRESS", "plain")
            assert board.mode() == "plain"
            monkeypatch.setenv("DRYML_PROGRESS", "auto")
            board.configure(None, io.StringIO(), None)
            assert board.mode() == "plain"  # not a terminal
            monkeypatch.setenv("DRYML_PROGRESS", "live")
            assert board.mode() == "live"
    finally:
        os.close(leader), os.close(follower)


def test_an_ascii_log_gets_the_line_without_the_dot(out: io.StringIO) -> None:
    raw = io.BytesIO()
    progress.configure(stream=io.TextIOWrapper(raw, encoding="ascii"))
    with progress.track("mlp", framework="torch", total=1):
        pass
    assert raw.getvalue().decode("ascii").splitlines()[0] == "mlp - torch: started (1 epoch)"


def test_a_bad_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="'auto', 'live', 'plain', 'off'"):
        progress.configure("fancy")


def test_every_backend_words_labels_and_early_stopping_alike() -> None:
    from dryml.models import Trainable

    class Net(Trainable):
        task = "classifier"

    model = Net(dry_id="1a2b3c4d-0000")
    assert progress.label_of(model) == "Net classifier 1a2b3c4d"
    assert progress.early_stopping_message("epoch", 9, "val_loss", 0.31214, 4) == (
        "early stopping after epoch 9: best val_loss=0.31214 at epoch 4")


@compute_context({"default": {}})
def _fork_and_report() -> str:
    pid = os.fork()
    if pid == 0:  # a process the worker forked (as a data loader does): its events go nowhere
        progress.status("from the forked child")
        os._exit(0)
    os.waitpid(pid, 0)
    with progress.track("in the worker", framework="numpy", total=1) as bar:
        bar.update(1)
    return "ok"


def test_a_worker_sends_its_lines_to_the_caller_and_its_forked_children_do_not(
        out: io.StringIO) -> None:
    assert _fork_and_report() == "ok"
    lines = out.getvalue().splitlines()
    assert lines[0] == "in the worker · numpy: started (1 epoch)"
    assert lines[1].startswith("in the worker · numpy: finished at epoch 1/1 in ")
    assert len(lines) == 2


@pytest.mark.parametrize("width", [30, 60, 80, 120, 200])
def test_a_live_line_stays_one_line_and_keeps_count_and_eta(width: int) -> None:
    from dryml._progress_board import TrackState
    from dryml._progress_live import render_line

    state = TrackState("XGBoostTrainable classifier 5be3a7c1", "xgboost", 300, "round", 0, 21,
                       started=0.0, metrics={"mlogloss": 0.006, "val_mlogloss": 0.0828})
    line = render_line(state, 1.5, width).plain
    assert len(line) < width and "\n" not in line
    assert re.search(r"  round 21/300 .*\d:\d\d ETA \d:\d\d$", line), line
    if width >= 80:  # the whole label first
        assert line.startswith("XGBoostTrainable classifier 5be3a7c1 · xgboost ")
    if width >= 120:  # then the bar
        assert " xgboost ━━━━━━━━━━━━━━━━━━━━  round" in line
    if width >= 200:  # then every metric
        assert "  mlogloss=0.006 val_mlogloss=0.0828  " in line


def test_an_executor_without_a_channel_can_carry_the_events(out: io.StringIO) -> None:
    sent: list[dict[str, object]] = []
    progress.set_sender(sent.append)
    try:
        with progress.track("on a cluster", framework="torch", total=2) as bar:
            bar.update(2, {"loss": 0.5})
    finally:
        progress.set_sender(None)
    assert out.getvalue() == ""  # nothing drawn where the events were made
    for event in sent:  # the caller's executor hands them to its display
        progress.deliver(event, origin=4242)
    lines = out.getvalue().splitlines()
    assert lines[0] == "on a cluster · torch: started (2 epochs)"
    assert lines[-1].startswith("on a cluster · torch: finished at epoch 2/2 in ")
