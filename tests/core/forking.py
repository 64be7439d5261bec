"""Run a function in a forked child and get its exit code, failing the test if it hangs."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest


def run_forked(child: Callable[[], None], timeout: float = 60) -> int:
    """Fork, run ``child`` in the child (exit 0 when it returns, 1 when it raises), and return
    its exit code; the child is killed and the test fails if it does not end within
    ``timeout`` seconds."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            child()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child hung for {timeout} s (a lock held by the parent's thread?)")
