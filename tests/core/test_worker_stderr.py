"""A worker's stderr reaches the caller's ``sys.stderr``, without the lines its framework's
context declares noise, and still when the worker dies right after writing it."""

from __future__ import annotations

import os
import re
import time

import pytest

from dryml.context import WorkerCrashedError, compute_context
from dryml.context._stderr import StderrForwarder, noise_pattern


class NoisyContext:
    stderr_noise = (r"^WARNING: All log messages before absl", r"\] oneDNN custom operations ")


def forward(chunks: list[bytes], pause: float = 0.0,
            noise: re.Pattern[str] | None = None) -> None:
    read, write = os.pipe()
    forwarder = StderrForwarder(os.fdopen(read, "rb", buffering=0), noise, "test-stderr")
    for chunk in chunks:
        os.write(write, chunk)
        time.sleep(pause)
    os.close(write)
    forwarder.join(10)


def test_noise_lines_are_dropped_and_every_other_line_passes(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRYML_FRAMEWORK_LOGS", raising=False)
    noise = noise_pattern([NoisyContext(), object()])
    forward([b"WARNING: All log messages before absl::InitializeLog() is called ...\n",
             b"I0000 port.cc:153] oneDNN custom operations are on. You may see\n"
             b"E0000 kernel.cc:1] a real error\nTraceback (most recent call last):\n",
             "  caf\u00e9".encode()[:-1], "  caf\u00e9".encode()[-1:] + b" done\n"],
            noise=noise)
    assert capsys.readouterr().err == (
        "E0000 kernel.cc:1] a real error\nTraceback (most recent call last):\n  caf\u00e9 done\n")


def test_the_switch_shows_the_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRYML_FRAMEWORK_LOGS", "1")
    assert noise_pattern([NoisyContext()]) is None
    monkeypatch.setenv("DRYML_FRAMEWORK_LOGS", "0")
    assert noise_pattern([NoisyContext()]) is not None


def test_progress_updates_and_unfinished_lines_pass_through(
        capsys: pytest.CaptureFixture[str]) -> None:
    # a \r-updated bar and a prompt without its newline show without waiting for more
    forward([b"\r 10%", b"\r 50%", b"\r100%\n", b"Continue? "], pause=0.3)
    assert capsys.readouterr().err == "\r 10%\r 50%\r100%\nContinue? "


def test_what_a_dying_worker_wrote_last_is_shown(capsys: pytest.CaptureFixture[str]) -> None:
    @compute_context()
    def abort() -> None:
        os.write(2, b"F0000 check.cc:1] Check failed: the last words\n")
        os.abort()

    with pytest.raises(WorkerCrashedError, match="SIGABRT"):
        abort()
    assert "Check failed: the last words" in capsys.readouterr().err


def test_a_workers_stderr_goes_through_the_callers_sys_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    @compute_context()
    def warn() -> int:
        import sys

        print("a warning from the worker", file=sys.stderr, flush=True)
        return os.getpid()

    pid = warn()
    deadline = time.monotonic() + 10
    err = ""
    while "a warning from the worker" not in err and time.monotonic() < deadline:
        time.sleep(0.05)
        err += capsys.readouterr().err
    assert "a warning from the worker" in err and pid != os.getpid()
