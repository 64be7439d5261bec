"""One worker process seen from the caller: start it, call it, notice when it dies.

The caller starts a keeper process, which forks the worker (see :mod:`dryml.context._keeper`).
``proc`` is the keeper (the caller's child, leader of the session and process group that the
worker and its children share); ``pid`` is the worker. The keeper exits as the worker did,
after ending everything the worker started, so its exit status is the worker's. The keeper is
never reaped before its process group has been killed: until then its pid (the group id) cannot
be reused, so ``killpg`` can never reach an unrelated process.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from dryml import progress
from dryml.context._protocol import Channel, ChannelClosed
from dryml.context._scheduler import Grant
from dryml.context._stderr import StderrForwarder, noise_pattern
from dryml.errors import BackendUnavailableError, WorkerCrashedError
from dryml.records import load_ref

__all__ = ["WorkerHandle"]

#: Serves a nested call a worker forwards: (the worker, the call, seconds left to its own call).
NestedHandler = Callable[["WorkerHandle", tuple[Any, Any, Any], float | None], dict[str, Any]]
KEEPER_GRACE = 10.0
"""Seconds to wait for a keeper to end its worker's processes before killing the group."""
_LONGEST_WAIT = 86400.0


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


def _pidfd(pid: int) -> int | None:
    with contextlib.suppress(OSError, AttributeError):
        return os.pidfd_open(pid)
    return None


def _readable(fd: int, timeout: float) -> bool:
    poller = select.poll()  # not select(): a busy caller may have fd numbers above 1023
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _keeper_exited(pid: int) -> bool:
    """Whether the child ``pid`` has exited, without reaping it (where ``waitid`` exists)."""
    if not hasattr(os, "waitid"):
        return False
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _dying(pid: int) -> bool:
    """True while a killed process is torn down: its main thread is a zombie already, but
    ``waitpid`` cannot reap it until its other threads have gone (Linux; False elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


class WorkerHandle:
    """A running worker prepared for one context; used by one call at a time.

    Starting it takes at most ``startup_timeout`` seconds (else TimeoutError, and it is
    killed).
    """

    def __init__(self, grant: Grant, plugins: Mapping[str, str], env: Mapping[str, str],
                 startup_timeout: float | None = None) -> None:
        self.grant = grant
        self.key = grant.request
        #: the grants of the workers waiting on the call this one runs (nested calls)
        self.callers_hold: tuple[Grant, ...] = ()
        #: set when this process itself ended the worker during a call (the pool shut down)
        self.ended_by: str | None = None
        self.busy = True
        self.last_used = time.monotonic()
        # kill() may come from another thread (a pool shut down by Ctrl-C) while a call waits
        # on this worker's descriptors: it ends the processes at once, and the descriptors are
        # closed once, by whoever holds them last, never under a thread that polls them (a
        # number closed twice may by then name another file of this process).
        self._kill_lock = threading.Lock()
        self._caller: int | None = None
        noise = noise_pattern(map(load_ref, plugins.values()))  # before any process starts
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        life_r, self._lifeline = os.pipe()
        passed = (to_worker_r, from_worker_w, life_r)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dryml.context._worker", *map(str, passed),
                 str(os.getpid())],
                pass_fds=passed, env=dict(env), stdin=subprocess.DEVNULL,
                # both forwarded by this process (stderr without framework noise) to its
                # sys.stdout and sys.stderr: a notebook shows a worker's prints in its cell
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True)  # Ctrl-C reaches the caller only; it stops workers
        except BaseException:
            for fd in (*passed, from_worker_r, to_worker_w, self._lifeline):
                os.close(fd)
            raise
        finally:
            for fd in passed:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.pid = self.proc.pid  # the keeper's until the worker says which it is
        assert self.proc.stderr is not None
        self._stderr = StderrForwarder(self.proc.stderr, noise, f"dryml-stderr-{self.pid}")
        assert self.proc.stdout is not None
        self._stdout = StderrForwarder(self.proc.stdout, None, f"dryml-stdout-{self.pid}",
                                       stream="stdout")
        self.channel = Channel(from_worker_r, to_worker_w)
        self._pidfd = _pidfd(self.proc.pid)  # the keeper's
        self._worker_pidfd: int | None = None
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
        if kind == "ready":
            self.pid = int(info)
            # The worker's own end shows at once even while a process it forked still holds
            # its end of the channel (the keeper exits only after ending such processes).
            self._worker_pidfd = _pidfd(self.pid)
            if self._worker_pidfd is not None:
                self._selector.register(self._worker_pidfd, selectors.EVENT_READ, "exit")
        else:
            self.kill()
            missing, text = info
            error = BackendUnavailableError if missing else WorkerCrashedError
            raise error(f"a worker for {self.describe()} could not be prepared (is the "
                        f"framework installed?); its error:\n{text}")

    def describe(self) -> str:
        """``{'torch': {'gpu/0': 0.5, 'cpu/1': 1.0}}``-like text for messages."""
        return str({fw: dict(share) for fw, share in self.grant.shares.items()})

    def exited(self) -> bool:
        """Whether the keeper or the worker has ended (cheap; reaps nothing)."""
        if self.proc.returncode is not None:
            return True
        for fd in (self._pidfd, self._worker_pidfd):
            if fd is not None and _readable(fd, 0):
                return True
        if self._pidfd is None:  # no pidfd (not Linux): ask without reaping
            if _keeper_exited(self.proc.pid):
                return True
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
        return False

    def alive(self) -> bool:
        """Whether the worker still runs (a process that is being torn down does not)."""
        return not self.exited() and not _dying(self.pid)

    def _wait_exit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the keeper to exit, without reaping it."""
        if self.proc.returncode is not None:
            return True
        if self._pidfd is not None:
            return _readable(self._pidfd, timeout)
        if not hasattr(os, "waitid"):  # cannot wait without reaping: reap
            try:
                self.proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while not _keeper_exited(self.proc.pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _receive(self, timeout: float | None, doing: str,
                 limit: float | None = None) -> tuple[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            # in slices: poll() takes at most 2**31 ms (a call_timeout of a month is allowed)
            events = self._selector.select(None if remaining is None
                                           else min(remaining, _LONGEST_WAIT))
            if not events and remaining is not None and remaining > _LONGEST_WAIT:
                continue
            if not events:
                self.kill()
                if doing == "starting":
                    raise TimeoutError(
                        f"the worker for {self.describe()} took longer than {timeout:.4g}s "
                        "to start (the start-up limit of a call with a call_timeout: see "
                        "docs/context.md); it was stopped, and the next call starts another")
                raise TimeoutError(
                    f"the call took longer than call_timeout={limit or timeout:.4g}s while "
                    f"{doing}; its worker (pid {self.pid}) was stopped and will be replaced")
            if any(key.data == "data" for key, _ in events):
                try:
                    return pickle.loads(self.channel.recv_bytes())  # type: ignore[no-any-return]
                except ChannelClosed:
                    pass
            self._crashed(doing)

    def _crashed(self, doing: str) -> None:
        # The keeper is ending what the worker started and will exit with the worker's status.
        ended = self._wait_exit(KEEPER_GRACE)
        self.kill()
        code = self.proc.returncode if ended else None
        death = f"was stopped by {self.ended_by}" if self.ended_by else _death(code)
        raise WorkerCrashedError(
            f"the worker (pid {self.pid}) for {self.describe()} {death} while {doing}; "
            "its resources were released and the next call starts a new worker")

    def call(self, msg: dict[str, Any], timeout: float | None,
             on_nested: NestedHandler) -> dict[str, Any]:
        """Send one call and wait for its reply, serving nested calls the worker forwards.

        If anything interrupts the wait (Ctrl-C in the caller), the worker is killed: its state
        is unknown and it must not answer the next call with this one's result.
        """
        with self._kill_lock:
            stopped = self._lifeline < 0
            if not stopped:
                self._caller = threading.get_ident()
        if stopped:  # between its checkout and this call (the workers were shut down)
            self.kill()  # idempotent: closes what is still open, from this thread
            raise WorkerCrashedError(
                f"the worker (pid {self.pid}) for {self.describe()} was stopped before the "
                "call reached it (the workers were shut down); the next call starts a new one")
        try:
            return self._call(msg, timeout, on_nested)
        except BaseException:
            self.kill()
            raise
        finally:
            with self._kill_lock:
                self._caller = None
                killed = self._lifeline < 0
            if killed:  # by another thread while this one waited: close what it left open
                self.kill()
            progress.forget(self.pid)  # tracks the call left open (or its crash cut short)

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
                self._stdout.settle()  # the call's prints show before the caller's next ones
                self._stderr.settle()
                return payload  # type: ignore[no-any-return]
            if kind == "progress":  # drawn by this process's one display
                progress.deliver(payload, self.pid)
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            reply = on_nested(self, payload, remaining)
            try:
                self.channel.send_bytes(pickle.dumps(("nested_reply", reply), protocol=5))
            except ChannelClosed:
                self._crashed("running a call")

    def stop(self, wait: float = 1.0) -> None:
        """Ask the worker to exit; kill it if it does not within ``wait`` seconds."""
        if self.alive():
            try:
                self.channel.send_bytes(pickle.dumps(("stop", None)))
                self._wait_exit(wait)
            except ChannelClosed:
                pass
        self.kill()

    def forget(self) -> None:
        """In a forked child: close the inherited pipes without touching the parent's worker.

        The lifeline must close here too, or the worker would outlive its real caller.
        """
        channel = () if self.channel.closed else (self.channel.read_fd, self.channel.write_fd)
        for fd in (self._lifeline, *channel, self._pidfd, self._worker_pidfd):
            if fd is not None and fd >= 0:  # each once: kill() may have closed some already
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._lifeline, self._pidfd, self._worker_pidfd = -1, None, None
        self.channel.closed = True

    def kill(self) -> None:
        """End the worker and every process it started, then close everything (idempotent).

        Closing the lifeline tells the keeper to do it: it kills the worker and every
        descendant, also those in their own session. Should the keeper not exit in time (or be
        gone already), the process group is killed: the keeper leads it and, unreaped, keeps
        its id from being reused. Safe from any thread: while another thread is in
        :meth:`call`, that thread wakes (the worker is gone) and closes the descriptors.
        """
        with self._kill_lock:
            if self._lifeline >= 0:
                os.close(self._lifeline)
                self._lifeline = -1
            if self.proc.returncode is None:
                self._wait_exit(KEEPER_GRACE)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait()
            if self._caller is not None and self._caller != threading.get_ident():
                return
            self._stderr.join(1.0)  # its last lines (a crash's) show before the caller goes on
            self._stdout.join(1.0)
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                self._selector.close()
            self.channel.close()
            for fd in (self._pidfd, self._worker_pidfd):
                if fd is not None:
                    os.close(fd)
            self._pidfd = self._worker_pidfd = None
