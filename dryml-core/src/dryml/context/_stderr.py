"""A worker's stderr, forwarded by its caller line by line, without its framework's noise.

A worker writes its stderr (and so does everything it starts) into a pipe that a thread of the
caller reads. Each line goes to the caller's ``sys.stderr`` as it is at that moment, so a live
progress display draws it above itself, except lines that a ``dryml_contexts`` implementation
declares known start-up noise with its optional ``stderr_noise`` attribute (regular
expressions searched in each line; e.g. TensorFlow's C++ start-up notices).
``DRYML_FRAMEWORK_LOGS=1`` shows every line again, and backends then leave their frameworks'
own log levels alone. Because the caller reads the pipe, what a worker writes just before it
dies (a fatal native error, a faulthandler traceback) is still shown.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import select
import sys
import threading
import time
from collections.abc import Iterable
from typing import IO

__all__ = ["SWITCH", "StderrForwarder", "filter_own_stderr", "framework_logs_shown",
           "noise_pattern"]

SWITCH = "DRYML_FRAMEWORK_LOGS"
"""The environment variable that shows frameworks' own log lines (``1``)."""
_PARTIAL_WAIT_MS = 100  # a line without its end yet (a prompt, a \r update) waits this long
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")


def framework_logs_shown() -> bool:
    """Whether ``DRYML_FRAMEWORK_LOGS`` asks for frameworks' own log lines (1/true/yes/on)."""
    return os.environ.get(SWITCH, "").strip().lower() in {"1", "true", "yes", "on"}


def noise_pattern(impls: Iterable[object]) -> re.Pattern[str] | None:
    """One pattern for every line the context implementations call noise; None for none (or
    when ``DRYML_FRAMEWORK_LOGS`` asks for everything)."""
    if framework_logs_shown():
        return None
    patterns = [p for impl in impls for p in getattr(impl, "stderr_noise", ())]
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


class StderrForwarder:
    """A daemon thread copying a worker's stderr pipe to ``sys.stderr`` until end-of-file
    (``stream="stdout"``: its stdout pipe to ``sys.stdout``)."""

    def __init__(self, pipe: IO[bytes], noise: re.Pattern[str] | None, name: str,
                 out: IO[str] | None = None, stream: str = "stderr") -> None:
        self._pipe = pipe
        self._noise = noise
        self._out = out  # None: sys.stderr (sys.stdout) as it is at each write
        self._stream = stream
        #: whether text read from the pipe is being written out
        self._writing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the last lines (after the worker has ended)."""
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def settle(self, timeout: float = 0.02) -> None:
        """Wait, at most ``timeout`` seconds, until the pipe is empty and the lines read from
        it are written: a call's output shows before the caller goes on (the worker flushes
        it before its reply), in order with the caller's own lines. A line without its end
        is not waited for (it shows when it ends, or 0.1 s later), and a worker that keeps
        writing (a thread's log) delays a call by ``timeout`` at most."""
        deadline = time.monotonic() + timeout
        try:
            poller = select.poll()  # not select(): a descriptor past 1024 is fine
            poller.register(self._pipe.fileno(), select.POLLIN)
            while time.monotonic() < deadline and self._thread.is_alive() and (
                    self._writing or poller.poll(0)):
                time.sleep(0.0005)
        except (OSError, ValueError):  # the pipe closed: everything was written
            return

    def _run(self) -> None:
        fd = self._pipe.fileno()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        pending = ""
        try:
            while True:
                if pending and not poller.poll(_PARTIAL_WAIT_MS):
                    _write(pending, self._out, self._stream)
                    pending = ""
                    continue
                if not pending:
                    poller.poll()  # until there is something to read
                # said before the read: once the pipe is empty, settle() sees this instead
                self._writing = True
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                pending += decoder.decode(chunk)
                cut = max(pending.rfind("\n"), pending.rfind("\r")) + 1
                if cut:
                    _write("".join(line for line in _LINE.findall(pending[:cut])
                                   if not self._is_noise(line)), self._out, self._stream)
                    pending = pending[cut:]
                self._writing = False
            _write(pending + decoder.decode(b"", final=True), self._out, self._stream)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self._pipe.close()

    def _is_noise(self, line: str) -> bool:
        return self._noise is not None and self._noise.search(line.rstrip("\r\n")) is not None


def filter_own_stderr(noise: re.Pattern[str] | None) -> StderrForwarder | None:
    """Drop ``noise`` lines from what this process (and what it starts) writes to fd 2.

    For workers whose stderr no dryml caller reads (a Ray actor: Ray copies it to the
    driver): fd 2 becomes a pipe, and a thread copies its lines, less the noise, to where fd 2
    pointed before. Nothing happens for no pattern."""
    if noise is None:
        return None
    original = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    return StderrForwarder(os.fdopen(read_end, "rb"), noise, "dryml-own-stderr", original)


def _write(text: str, out: IO[str] | None = None, name: str = "stderr") -> None:
    stream = out if out is not None else getattr(sys, name)
    if not text or stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        stream.write(text)
        stream.flush()
