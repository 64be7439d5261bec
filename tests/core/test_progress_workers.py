"""What a user sees while two compute-context workers train at once: one display drawn by the
caller, on a terminal (a pseudo-terminal) and into a pipe. The scripts run as real processes
with real workers."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from progress_terminal import run_in_pipe, run_in_pty, screens

SCRIPT = textwrap.dedent('''
    """Two workers train at once; each waits for the other before its first epoch."""
    import concurrent.futures as cf
    import os
    import time
    from pathlib import Path

    from dryml import progress
    from dryml.context import compute_context


    @compute_context({"default": {}})
    def fit(name: str, epochs: int, here: str, other: str) -> int:
        with progress.track(name, framework="numpy", total=epochs) as bar:
            Path(here).touch()
            deadline = time.monotonic() + 120
            while not Path(other).exists() and time.monotonic() < deadline:
                time.sleep(0.05)  # both lines are on the display before either advances
            for epoch in range(epochs):
                time.sleep(0.2)
                bar.update(epoch + 1, {"loss": 1.0 / (epoch + 1)})
            bar.status(progress.early_stopping_message("epoch", epochs, "val_loss", 0.25, 2))
        return os.getpid()


    progress.status("[dryml] training two models")
    with cf.ThreadPoolExecutor(2) as pool:
        pids = list(pool.map(fit, ["model A", "model B"], [6, 8], ["a", "b"], ["b", "a"]))
    assert pids[0] != pids[1], "two workers"
    print("[dryml] finished both models", flush=True)
''')

FINISHED = re.compile(r"model (A|B) · numpy: finished at epoch (6/6|8/8) in \d+:\d\d, "
                      r"loss=0\.1(667|25)")


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "train_two.py"
    path.write_text(SCRIPT, encoding="utf-8")
    return path


def test_a_pipe_gets_one_plain_line_per_event_and_no_control_characters(
        script: Path) -> None:
    for name in ("a", "b"):
        (script.parent / name).unlink(missing_ok=True)
    out = run_in_pipe(script, {"DRYML_PROGRESS_INTERVAL": "0"})
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    for name, epochs in (("A", 6), ("B", 8)):
        mine = [line for line in lines if line.startswith(f"model {name} · numpy: ")]
        # drawn once, by the caller: a worker drawing too would double every line
        assert mine[0] == f"model {name} · numpy: started ({epochs} epochs)"
        assert sum(line.endswith("epochs)") for line in mine) == 1
        periodic = [line for line in mine if re.match(
            rf"model {name} · numpy: epoch \d/{epochs}, loss=[\d.]+, \d+:\d\d, ETA", line)]
        assert periodic, mine
        assert mine[-2] == (f"model {name} · numpy: early stopping after epoch {epochs}: "
                            "best val_loss=0.25 at epoch 2")
        assert FINISHED.fullmatch(mine[-1]), mine[-1]
    assert lines[0] == "[dryml] training two models"
    assert lines[-1] == "[dryml] finished both models"


def test_a_terminal_gets_one_live_display_with_status_lines_above_it(script: Path) -> None:
    for name in ("a", "b"):
        (script.parent / name).unlink(missing_ok=True)
    raw = run_in_pty(script)
    assert "\x1b[" in raw  # drawn in place
    live = re.compile(r"model (A|B) · numpy ━{20}  epoch \d/\d(  loss=[\d.]+)?  \d+:\d\d "
                      r"ETA (-:--|\d+:\d\d)")
    both, screen = None, []
    for screen in screens(raw):
        if both is None and sum(bool(live.fullmatch(line)) for line in screen) == 2:
            both = screen
    assert both is not None, "never were both models on the display at once:\n" + raw
    assert both[0] == "[dryml] training two models"  # the status line stays above
    final = [line for line in screen if line]  # the last screen the user is left with
    assert final[0] == "[dryml] training two models"
    assert final[-1] == "[dryml] finished both models"
    assert not any("━━" in line for line in final)  # the display is gone when training ends
    assert sum(bool(FINISHED.fullmatch(line)) for line in final) == 2, final
    assert sum("early stopping after epoch" in line for line in final) == 2, final
