"""One worker process seen from the caller: start it, call it, notice when it dies."""

from __future__ import annotations

import contextlib
import os
import pickle
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from dryml.context._protocol import Channel, ChannelClosed
from dryml.context._scheduler import Grant
from dryml.errors import BackendUnavailableError, WorkerCrashedError

__all__ = ["WorkerHandle"]

NestedHandler = Callable[["WorkerHandle", tuple[Any, Any, Any]], dict[str, Any]]


def _death(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = {"SIGKILL": " (the OOM killer, or someone, killed it)",
               "SIGSEGV": " (a segmentation fault in native code)",
               "SIGABRT": " (native code aborted)"}.get(name, "")
        return f"was killed by {name}{why}"
    return f"exited with status {code} (os._exit or sys.exit in the called code?)"


def _dying(pid: int) -> bool:
    """True while a killed process is torn down: its main thread is a zombie already, but
    ``waitpid`` cannot reap it until its other threads have gone (Linux; False elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


class WorkerHandle:
    """A running worker prepared for one context; used by one call at a time."""

    def __init__(self, grant: Grant, plugins: Mapping[str, str], env: Mapping[str, str],
                 startup_timeout: float | None = None) -> None:
        self.grant = grant
        self.key = grant.request
        self.busy = True
        self.last_used = time.monotonic()
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        life_r, self._lifeline = os.pipe()
        passed = (to_worker_r, from_worker_w, life_r)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dryml.context._worker", *map(str, passed)],
                pass_fds=passed, env=dict(env), stdin=subprocess.DEVNULL,
                start_new_session=True)  # Ctrl-C reaches the caller only; it stops workers
        except BaseException:
            for fd in (*passed, from_worker_r, to_worker_w, self._lifeline):
                os.close(fd)
            raise
        finally:
            for fd in passed:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.pid = self.proc.pid
        self.channel = Channel(from_worker_r, to_worker_w)
        self._pidfd = os.pidfd_open(self.pid) if hasattr(os, "pidfd_open") else None
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.channel.read_fd, selectors.EVENT_READ, "data")
        if self._pidfd is not None:
            self._selector.register(self._pidfd, selectors.EVENT_READ, "exit")
        try:
            self.channel.send_bytes(pickle.dumps({
                "sys_path": list(sys.path), "plugins": dict(plugins), **grant.to_dict()}))
            kind, info = self._receive(startup_timeout, "starting")
        except BaseException:
            self.kill()
            raise
        if kind != "ready":
            self.kill()
            missing, text = info
            error = BackendUnavailableError if missing else WorkerCrashedError
            raise error(f"a worker for {self.describe()} could not be prepared (is the "
                        f"framework installed?); its error:\n{text}")

    def describe(self) -> str:
        """``{'torch': {'gpu/0': 0.5, 'cpu/1': 1.0}}``-like text for messages."""
        return str({fw: dict(share) for fw, share in self.grant.shares.items()})

    def alive(self) -> bool:
        """Whether the process still runs (a process that is being torn down does not)."""
        return self.proc.poll() is None and not _dying(self.pid)

    def _receive(self, timeout: float | None, doing: str,
                 limit: float | None = None) -> tuple[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            events = self._selector.select(remaining)
            if not events:
                self.kill()
                raise TimeoutError(
                    f"the call took longer than call_timeout={limit or timeout}s while "
                    f"{doing}; its worker (pid {self.pid}) was stopped and will be replaced")
            if any(key.data == "data" for key, _ in events):
                try:
                    return pickle.loads(self.channel.recv_bytes())  # type: ignore[no-any-return]
                except ChannelClosed:
                    pass
            self._crashed(doing)

    def _crashed(self, doing: str) -> None:
        try:
            code = self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            code = None
        self.kill()
        raise WorkerCrashedError(
            f"the worker (pid {self.pid}) for {self.describe()} {_death(code)} while {doing}; "
            "its resources were released and the next call starts a new worker")

    def call(self, msg: dict[str, Any], timeout: float | None,
             on_nested: NestedHandler) -> dict[str, Any]:
        """Send one call and wait for its reply, serving nested calls the worker forwards.

        If anything interrupts the wait (Ctrl-C in the caller), the worker is killed: its state
        is unknown and it must not answer the next call with this one's result.
        """
        try:
            return self._call(msg, timeout, on_nested)
        except BaseException:
            self.kill()
            raise

    def _call(self, msg: dict[str, Any], timeout: float | None,
              on_nested: NestedHandler) -> dict[str, Any]:
        try:
            self.channel.send_bytes(pickle.dumps(("call", msg), protocol=5))
        except ChannelClosed:
            self._crashed("receiving a call")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            kind, payload = self._receive(remaining, "running a call", timeout)
            if kind == "reply":
                return payload  # type: ignore[no-any-return]
            reply = on_nested(self, payload)
            try:
                self.channel.send_bytes(pickle.dumps(("nested_reply", reply), protocol=5))
            except ChannelClosed:
                self._crashed("running a call")

    def stop(self, wait: float = 1.0) -> None:
        """Ask the worker to exit; kill it if it does not within ``wait`` seconds."""
        if self.alive():
            try:
                self.channel.send_bytes(pickle.dumps(("stop", None)))
                self.proc.wait(timeout=wait)
            except (ChannelClosed, subprocess.TimeoutExpired):
                pass
        self.kill()

    def forget(self) -> None:
        """In a forked child: close the inherited pipes without touching the parent's worker.

        The lifeline must close here too, or the worker would outlive its real caller.
        """
        for fd in (self._lifeline, self.channel.read_fd, self.channel.write_fd, self._pidfd):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._lifeline, self._pidfd, self.channel.closed = -1, None, True

    def kill(self) -> None:
        """Kill the process (if running) and close everything (idempotent)."""
        if self.proc.poll() is None:
            # The worker leads its own process group: its children (data loaders...) go too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            self._selector.close()
        self.channel.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
