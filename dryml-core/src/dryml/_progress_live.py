"""The live view of the progress board: a rich ``Live`` region with one line per track.

rich redraws the region in place, prints other output above it (``console.print`` and, while
it runs, whatever the process writes to stdout or stderr) and restores the terminal at the
end. Each line is composed here so that it stays one line at any terminal width: the metrics
give way first, then the bar, then the label; the count, elapsed time and ETA always show.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from rich.console import Console, ConsoleOptions
from rich.live import Live
from rich.text import Text

if TYPE_CHECKING:
    from dryml._progress_board import TrackState

__all__ = ["LiveView", "render_line"]

BAR = 20


def _bar(state: TrackState) -> Text:
    total = state.total or 0
    filled = BAR if total <= 0 else min(BAR, round(BAR * state.done / total))
    return Text.assemble(("━" * filled, "magenta"), ("━" * (BAR - filled), "bright_black"))


def render_line(state: TrackState, now: float, width: int) -> Text:
    """One track's line, shorter than ``width`` cells: ``label · framework ━━━━  epoch 3/60
    loss=0.41  0:12 ETA 3:40``. The count and times always show; then the label, the bar and
    the metrics, each as far as there is room."""
    from dryml._progress_board import clock, metrics_text

    eta = state.eta(now)
    tail = f"  {clock(now - state.started)} ETA {'-:--' if eta is None else clock(eta)}"
    count = f"  {state.count()}"
    room = width - 1 - len(count) - len(tail)  # never the last column: no terminal wrap
    title = state.title
    if len(title) > room:
        title = title[:room - 1] + "…" if room > 1 else ""
    room -= len(title)
    line = Text(title, style="bold")
    if state.total and room >= BAR + 1:
        line.append(" ")
        line.append_text(_bar(state))
        room -= BAR + 1
    line.append(count)
    metrics = metrics_text(state.metrics)
    if metrics and room > 3:
        shown = metrics if len(metrics) <= room - 2 else metrics[:room - 3] + "…"
        line.append("  " + shown, style="cyan")
    line.append(tail, style="dim")
    return line


class LiveView:
    """The running tracks, drawn on a terminal (``start``, ``refresh``, ``print``, ``stop``)."""

    def __init__(self, stream: IO[str]) -> None:
        self.console = Console(file=stream, force_terminal=True, highlight=False)
        self.states: tuple[TrackState, ...] = ()  # replaced whole, read without a lock
        self.live = Live(self, console=self.console, redirect_stdout=True,
                         redirect_stderr=True, refresh_per_second=4, transient=True)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        now = time.monotonic()
        for state in self.states:
            yield render_line(state, now, options.max_width)

    def start(self) -> None:
        """Start drawing."""
        self.live.start()

    def refresh(self) -> None:
        """Redraw now."""
        self.live.refresh()

    def print(self, line: str) -> None:
        """A line above the region."""
        self.console.print(Text(line), soft_wrap=True)

    def stop(self) -> None:
        """Stop drawing and clear the region."""
        self.live.stop()
