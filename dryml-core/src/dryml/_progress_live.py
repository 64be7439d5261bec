"""The live view of the progress board: one rich ``Progress`` (imported only when drawn)."""

from __future__ import annotations

from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["live_progress"]


def live_progress(stream: IO[str]) -> Any:
    """A rich Progress drawing on ``stream``: per track its label and framework, a bar, the
    count (``epoch 3/60``), the latest metrics, elapsed time and ETA. While it runs, what the
    process prints to stdout or stderr shows above it."""
    console = Console(file=stream, force_terminal=True, highlight=False)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        TextColumn("{task.fields[count]}"),
        TextColumn("{task.fields[metrics]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console, redirect_stdout=True, redirect_stderr=True, refresh_per_second=5,
        transient=True)
