"""Progress of training, drawn by the calling process as one display.

Training code (a backend's epoch loop, a search) opens a :func:`track` per running model or
trial, updates it with the count done and the latest metrics, and prints :func:`status` lines.
In the calling process these draw one display: one line per running track (label, framework,
epoch or round, metrics, elapsed time, ETA) with status lines printed above it. Inside a
compute-context worker nothing is drawn: every event travels to the calling process over the
worker's channel, so workers of several frameworks running at once share the caller's display.

On a terminal the display is live (redrawn in place); on a pipe or a log file it is plain
lines: one when a track starts, at most one per track every ``interval`` seconds, one when it
ends. ``DRYML_PROGRESS`` chooses: ``auto`` (default: live on a terminal, else plain),
``live``, ``plain`` or ``off`` (no tracks drawn; status lines still print);
``DRYML_PROGRESS_INTERVAL`` sets the seconds between plain lines (default 10).
:func:`configure` does the same from Python.

>>> from dryml import progress
>>> with progress.track("my model", framework="numpy", total=3) as bar:  # doctest: +SKIP
...     for epoch in range(3):
...         bar.update(epoch + 1, {"loss": 1.0 / (epoch + 1)})
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import IO, Any

__all__ = ["Track", "configure", "deliver", "early_stopping_message", "ended_by", "forget",
           "label_of", "reset", "set_sender", "status", "track"]

Event = dict[str, Any]

_ids = itertools.count(1)
_SEND_EVERY = 0.25
"""Seconds between two updates of one track that a worker sends (the last one always goes)."""


class Track:
    """One running model or trial on the display; a context manager that closes it on exit.

    Made by :func:`track`. ``update`` takes the absolute count done (epochs, rounds, trials)
    and, optionally, the latest metrics; ``status`` prints a line above the display, prefixed
    with the track's label; ``close`` ends the line (with an optional summary).
    """

    def __init__(self, label: str, framework: str, total: int | None, unit: str,
                 initial: int) -> None:
        self.key = next(_ids)
        self.label, self.framework, self.total, self.unit = label, framework, total, unit
        self.done = int(initial)
        self.metrics: dict[str, float] = {}
        self.closed = False
        self._sent = 0.0
        self._pending = False
        _emit({"op": "open", "key": self.key, "label": label, "framework": framework,
               "total": None if total is None else int(total), "unit": unit,
               "initial": int(initial)})

    def update(self, done: int, metrics: Mapping[str, float] | None = None) -> None:
        """``done`` units are finished (an absolute count); ``metrics``: the latest values."""
        if self.closed:
            return
        self.done = int(done)
        if metrics is not None:
            self.metrics = {str(k): float(v) for k, v in metrics.items()}
        now = time.monotonic()
        if (_sender is not None or _worker_channel() is not None) \
                and now - self._sent < _SEND_EVERY:
            self._pending = True  # a worker sends a few updates a second at most
            return
        self._sent, self._pending = now, False
        _emit({"op": "update", "key": self.key, "done": self.done, "metrics": self.metrics})

    def _flush(self) -> None:
        if self._pending:
            self._pending = False
            _emit({"op": "update", "key": self.key, "done": self.done, "metrics": self.metrics})

    def status(self, message: str) -> None:
        """Print ``message`` above the display, prefixed with this track's label."""
        self._flush()
        _emit({"op": "status", "key": self.key, "message": str(message)})

    def close(self, summary: str | None = None) -> None:
        """End the track (idempotent); ``summary`` is shown on its last line."""
        if self.closed:
            return
        self.closed = True
        _emit({"op": "close", "key": self.key, "done": self.done, "metrics": self.metrics,
               "summary": summary})

    def __enter__(self) -> Track:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(None if kind is None else ended_by(kind))


def ended_by(kind: type[BaseException]) -> str:
    """What a track that ended by an exception of class ``kind`` says: ``"failed: Name"``, or
    the class's own ``progress_summary`` (a trial a search's pruner stopped: ``"pruned"``)."""
    own = getattr(kind, "progress_summary", None)
    return own if isinstance(own, str) else f"failed: {kind.__name__}"


def track(label: str, *, framework: str, total: int | None, unit: str = "epoch",
          initial: int = 0) -> Track:
    """Open a line on the display for one model or trial.

    ``label`` names it (see :func:`label_of`), ``framework`` is shown next to it, ``total`` is
    the number of ``unit`` s planned (``None``: unknown), ``initial`` the count already done
    (a resumed training).
    """
    return Track(label, framework, total, unit, initial)


def status(message: str) -> None:
    """Print a status line above the display (not tied to any track)."""
    _emit({"op": "status", "key": None, "message": str(message)})


def label_of(model: Any) -> str:
    """The label every backend gives a model: its class, task and short id, e.g.
    ``KerasTrainable classifier 1a2b3c4d``."""
    parts = [type(model).__name__]
    task = getattr(model, "task", None)
    if isinstance(task, str) and task:
        parts.append(task)
    dry_id = getattr(model, "dry_id", None)
    if isinstance(dry_id, str):
        parts.append(dry_id[:8])
    return " ".join(parts)


def early_stopping_message(unit: str, stopped: int, monitor: str, best: float | None,
                           best_at: int | None) -> str:
    """What every backend says when early stopping ends a training, e.g.
    ``early stopping after epoch 9: best val_loss=0.3121 at epoch 4``; ``best_at`` None: no
    epoch gave the monitor a number (NaN in every one)."""
    if best_at is None:
        return f"early stopping after {unit} {stopped}: {monitor} was NaN in every {unit}"
    value = "" if best is None else f"={best:.6g}"
    return f"early stopping after {unit} {stopped}: best {monitor}{value} at {unit} {best_at}"


def configure(mode: str | None = None, *, stream: IO[str] | str | None = None,
              interval: float | None = None) -> None:
    """Choose how this process draws progress (``None`` keeps a setting as it is).

    ``mode``: ``"auto"``, ``"live"``, ``"plain"`` or ``"off"`` (default: ``DRYML_PROGRESS``,
    else ``"auto"``); ``stream``: where to draw, a text file or ``"stdout"``/``"stderr"``
    (whatever ``sys.stdout``/``sys.stderr`` is when a line is drawn; default ``"stderr"``);
    ``interval``: seconds between two plain lines of one track (default:
    ``DRYML_PROGRESS_INTERVAL``, else 10). Call it in the calling process: workers draw
    nothing themselves. :func:`reset` undoes it.
    """
    from dryml import _progress_board

    _progress_board.board().configure(mode, stream, interval)


def reset() -> None:
    """Undo :func:`configure`: the environment's settings again, drawing on ``sys.stderr``."""
    from dryml import _progress_board

    _progress_board.board().reset()


# -- where events go ------------------------------------------------------------------------
_worker_pid: int | None = None
"""The pid of the worker whose channel carries this process's events (see :func:`_bind`)."""


def _bind() -> None:
    """In a worker, once its channel to the caller is set: send events there from now on."""
    global _worker_pid
    _worker_pid = os.getpid()


def _worker_channel() -> Any:
    from dryml.context import _nested

    return _nested._channel if _worker_pid is not None else None


_sender: Callable[[Event], None] | None = None


def set_sender(send: Callable[[Event], None] | None) -> None:
    """Where this process sends its events instead of drawing them (an executor's worker that
    has no dryml channel, e.g. a Ray actor, passes a function that gets them to the caller,
    whose executor hands each to :func:`deliver`); ``None`` draws here again."""
    global _sender
    _sender = send


def _emit(event: Event) -> None:
    if _sender is not None:
        _sender(event)
        return
    channel = _worker_channel()
    if channel is None:
        deliver(event, os.getpid())
        return
    if os.getpid() != _worker_pid:
        return  # a process the worker forked (a data loader): the channel is not its own
    import pickle

    from dryml.context import _nested
    from dryml.context._protocol import ChannelClosed

    data = pickle.dumps(("progress", event))
    with _nested._lock:  # the channel is shared with nested calls
        try:
            channel.send_bytes(data)
        except ChannelClosed:
            pass  # the caller is gone; the worker is about to be ended


def deliver(event: Event, origin: int) -> None:
    """Draw an event from process ``origin`` (this one, or a worker) on this process's
    display. The worker machinery calls this for every event a worker sends."""
    from dryml import _progress_board

    _progress_board.board().handle(event, origin)


def forget(origin: int) -> None:
    """Close the tracks a process left open (a worker whose call ended or died)."""
    from dryml import _progress_board

    _progress_board.board().forget(origin)
