"""The calling process's progress display (see :mod:`dryml.progress`).

The board keeps every open track, from this process and from its workers, and draws them with
one view: live (rich, redrawn in place on a terminal), plain (periodic lines for pipes and log
files) or off. rich draws the live view: it is well kept, thread-safe, redraws a region of
several lines in place and prints other output above it (tqdm's ``position=`` bars overwrite
each other and the lines printed between them). It is imported only when a live view starts.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from typing import IO, Any

import attrs

__all__ = ["Board", "TrackState", "board", "line_of"]

MODES = ("auto", "live", "plain", "off")
#: what people write for "off" in an environment variable
_OFF = frozenset({"0", "false", "no", "none", "disable", "disabled"})
_warned: set[str] = set()


@attrs.define
class TrackState:
    """What the caller knows of one open track."""

    label: str
    framework: str
    total: int | None
    unit: str
    initial: int
    done: int
    started: float
    metrics: dict[str, float] = attrs.field(factory=dict)
    last_line: float = 0.0
    live: bool = False  #: drawn by the live view

    @property
    def title(self) -> str:
        """``label · framework``: the same for every backend."""
        return f"{self.label} · {self.framework}"

    def count(self) -> str:
        """``epoch 3/60``, or ``epoch 3`` without a total."""
        total = "" if self.total is None else f"/{self.total}"
        return f"{self.unit} {self.done}{total}"

    def eta(self, now: float) -> float | None:
        """Seconds left at the rate since the track opened; None when unknown."""
        ran = self.done - self.initial
        if self.total is None or ran <= 0:
            return None
        return max(0.0, (now - self.started) / ran * (self.total - self.done))


def metrics_text(metrics: dict[str, float]) -> str:
    """``loss=0.412 val_loss=0.398``."""
    return " ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def clock(seconds: float) -> str:
    """``0:42`` or ``1:02:03``."""
    s = round(seconds)
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def line_of(state: TrackState, now: float, summary: str | None = None,
            closing: bool = False) -> str:
    """One plain line for a track (also the live view's final line of a track)."""
    if closing:
        head = f"{state.title}: {summary or 'finished'} at {state.count()} in "
        return head + ", ".join([clock(now - state.started),
                                 *([metrics_text(state.metrics)] if state.metrics else [])])
    parts = [f"{state.title}: {state.count()}"]
    if state.metrics:
        parts.append(metrics_text(state.metrics))
    parts.append(clock(now - state.started))
    eta = state.eta(now)
    if eta is not None:
        parts.append(f"ETA {clock(eta)}")
    return ", ".join(parts)


class Board:
    """Every open track of this process and its workers, and the view that draws them."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tracks: dict[tuple[int, Any], TrackState] = {}
        self._mode: str | None = None
        self._stream: IO[str] | str | None = None
        self._interval: float | None = None
        self._live: Any = None
        self._atexit = False

    # -- settings ---------------------------------------------------------------------------
    def configure(self, mode: str | None, stream: IO[str] | str | None,
                  interval: float | None) -> None:
        """See :func:`dryml.progress.configure`."""
        if mode is not None and mode not in MODES:
            raise ValueError(f"progress mode {mode!r} is not one of {MODES}")
        if isinstance(stream, str) and stream not in ("stdout", "stderr"):
            raise ValueError(f"progress stream {stream!r} is 'stdout', 'stderr' or a file")
        with self.lock:
            self._stop_live()
            if mode is not None:
                self._mode = mode
            if stream is not None:
                self._stream = stream
            if interval is not None:
                self._interval = float(interval)

    def reset(self) -> None:
        """Back to the environment's settings (and ``sys.stderr``)."""
        with self.lock:
            self._stop_live()
            self._mode = self._stream = self._interval = None
            _warned.clear()  # a wrong DRYML_PROGRESS warns again

    @property
    def stream(self) -> IO[str]:
        """Where the display is drawn (``sys.stderr`` unless configured)."""
        if self._stream is None or self._stream == "stderr":
            return sys.stderr
        if self._stream == "stdout":
            return sys.stdout
        return self._stream  # type: ignore[return-value]

    def mode(self) -> str:
        """``live``, ``plain`` or ``off``, as settings and the stream decide."""
        mode = self._mode or os.environ.get("DRYML_PROGRESS", "auto").strip().lower() or "auto"
        if mode in _OFF:
            mode = "off"
        elif mode not in MODES:
            if mode not in _warned:
                _warned.add(mode)
                import warnings

                from dryml.errors import DrymlWarning

                warnings.warn(f"DRYML_PROGRESS={mode!r} is not one of {', '.join(MODES)}; "
                              "using 'auto'", DrymlWarning, stacklevel=2)
            mode = "auto"
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            try:
                mode = "live" if isatty is not None and isatty() else "plain"
            except (OSError, ValueError):
                mode = "plain"
        return mode

    def interval(self) -> float:
        """Seconds between two plain lines of one track."""
        if self._interval is not None:
            return self._interval
        try:
            return float(os.environ.get("DRYML_PROGRESS_INTERVAL", "10"))
        except ValueError:
            return 10.0

    # -- events -----------------------------------------------------------------------------
    def handle(self, event: dict[str, Any], origin: int) -> None:
        """Apply one event (open, update, status, close)."""
        op = event.get("op")
        with self.lock:
            now = time.monotonic()
            key = (origin, event.get("key"))
            if op == "open":
                state = TrackState(event["label"], event["framework"], event["total"],
                                   event["unit"], event["initial"], event["initial"], now)
                self.tracks[key] = state
                self._opened(state, now)
            elif op == "status":
                opened = self.tracks.get(key)
                message = event["message"]
                self.print(f"{opened.title}: {message}" if opened is not None else message)
            elif op in ("update", "close"):
                known = self.tracks.get(key)
                if known is None:
                    return
                known.done, known.metrics = int(event["done"]), dict(event["metrics"])
                if op == "close":
                    del self.tracks[key]
                    self._closed(known, now, event.get("summary"))
                else:
                    self._updated(known, now)

    def forget(self, origin: int) -> None:
        """Close every track that ``origin`` left open."""
        with self.lock:
            now = time.monotonic()
            for key in [k for k in self.tracks if k[0] == origin]:
                self._closed(self.tracks.pop(key), now, "ended")

    # -- drawing ----------------------------------------------------------------------------
    def print(self, line: str) -> None:
        """A line above the display (or just a line)."""
        with self.lock:
            if self._live is not None:
                self._live.print(line)
            else:
                self._write(line)

    def _write(self, line: str) -> None:
        try:
            try:
                self.stream.write(line + "\n")
            except UnicodeEncodeError:  # an ASCII-only log: the same line without the dot
                self.stream.write(line.replace("\u00b7", "-").encode("ascii", "replace")
                                  .decode("ascii") + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stream must not break training

    def _opened(self, state: TrackState, now: float) -> None:
        mode = self.mode()
        if mode == "plain":
            plural = "" if state.total == 1 else "s"
            total = "" if state.total is None else f" ({state.total} {state.unit}{plural})"
            self._write(f"{state.title}: started{total}")
            state.last_line = now
        elif mode == "live":
            live = self._start_live()
            state.live = True
            live.states = tuple(s for s in self.tracks.values() if s.live)
            live.refresh()

    def _updated(self, state: TrackState, now: float) -> None:
        if state.live:
            return  # the live view redraws a few times a second
        if state.total is not None and state.done >= state.total:
            return  # its last line comes when it closes
        if self.mode() == "plain" and now - state.last_line >= self.interval():
            state.last_line = now
            self._write(line_of(state, now))

    def _closed(self, state: TrackState, now: float, summary: str | None) -> None:
        if state.live and self._live is not None:
            self._live.states = tuple(s for s in self.tracks.values() if s.live)
            self._live.refresh()  # the last line goes above the display without the track
            self._live.print(line_of(state, now, summary, closing=True))
            if not self._live.states:
                self._stop_live()
        elif not state.live and self.mode() == "plain":
            self._write(line_of(state, now, summary, closing=True))

    def _start_live(self) -> Any:
        if self._live is None:
            from dryml._progress_live import LiveView

            self._live = LiveView(self.stream)
            self._live.start()
            if not self._atexit:  # a process that ends mid-training gets its cursor back
                self._atexit = True
                atexit.register(self.stop)
        return self._live

    def stop(self) -> None:
        """Take the live display down (the tracks stay open)."""
        with self.lock:
            self._stop_live()

    def _stop_live(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()
            for state in self.tracks.values():
                state.live = False


_board: Board | None = None
_board_lock = threading.Lock()


def board() -> Board:
    """This process's board (made on first use)."""
    global _board
    with _board_lock:
        if _board is None:
            _board = Board()
        return _board
