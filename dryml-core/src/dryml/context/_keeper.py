"""The keeper: a small process per worker whose one job is that nothing the worker starts
outlives it, and that the worker does not outlive its caller.

The caller starts ``python -m dryml.context._worker``; that process forks at once. The parent
stays behind as the **keeper**, the child serves calls as the **worker**. Why a second process:

- A worker may sit in native code that holds the GIL for minutes (a long numpy or ctypes call);
  a thread inside it that watches the caller cannot run then. The keeper runs no user code and
  holds the lifeline from the caller, so when the caller dies (even by SIGKILL) it kills the
  worker at once, GIL or not.
- When the worker dies (segfault, ``os._exit``, SIGKILL), nothing in it runs any more, and its
  children (subprocesses, multiprocessing or DataLoader workers) would be re-parented to init
  and live on. On Linux the keeper is a *child subreaper*: the worker's orphans re-parent to
  the keeper, so it finds every descendant of the worker, also those that started their own
  session or process group, and kills them all before it exits.
- The keeper exits the way the worker did (same status, or killed by the same signal), so the
  caller reports what happened to the worker.

The worker gets ``PR_SET_PDEATHSIG(SIGKILL)``: if the keeper is killed, so is the worker (the
keeper forks from its only thread, so the "parent thread exited" pitfall of PDEATHSIG cannot
fire early). The keeper itself gets ``PR_SET_PDEATHSIG(SIGUSR1)`` as a second way to learn of
the caller's death; as that signal also comes when merely the *thread* that started it ends,
the keeper only checks whether its parent changed. Elsewhere than Linux (no prctl, no
subreaper) the keeper still ends the worker's process group when the caller goes away, and
the caller kills that group whenever a worker ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

__all__ = ["descendants", "prctl", "start", "watch_keeper"]

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
SWEEP_TIMEOUT = 5.0  # seconds the keeper waits for killed descendants to be reaped
_ENDING = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def prctl(option: int, value: int) -> bool:
    """``prctl(option, value)`` on Linux; False where unavailable or refused."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def start(lifeline: int, caller: int, worker_fds: tuple[int, ...]) -> int:
    """Fork. The parent stays the keeper and never returns; the child returns as the worker.

    ``lifeline`` reads end-of-file when the caller dies; ``worker_fds`` are the worker's own
    (the keeper closes them). Returns, in the worker, a descriptor that reads end-of-file when
    the keeper dies (for platforms without PDEATHSIG).
    """
    subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1)  # not inherited by the child
    keeper_r, keeper_w = os.pipe()
    keeper = os.getpid()
    worker = os.fork()
    if worker == 0:
        os.close(keeper_w)
        os.close(lifeline)
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL) and os.getppid() != keeper:
            os._exit(70)  # the keeper died before the signal was armed
        return keeper_r
    status: int | None = None
    try:
        os.close(keeper_r)
        for fd in worker_fds:
            os.close(fd)
        status = _keep(worker, lifeline, caller)
    except BaseException:  # noqa: BLE001 - a keeper must still clean up and exit, never return
        with contextlib.suppress(BaseException):
            import traceback

            traceback.print_exc()
    _end(worker, status, subreaper)


def _keep(worker: int, lifeline: int, caller: int) -> int | None:
    """Wait until the worker exits (its wait status) or the caller goes away (None)."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    received: list[int] = []

    def note(signum: int, frame: object) -> None:
        if signum in _ENDING:
            received.append(signum)

    for signum in (signal.SIGCHLD, signal.SIGUSR1, *_ENDING):
        signal.signal(signum, note)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    prctl(PR_SET_PDEATHSIG, signal.SIGUSR1)
    poller = select.poll()  # not select(): the lifeline keeps the caller's fd number, maybe >1023
    for fd in (lifeline, wake_r):
        poller.register(fd, select.POLLIN)
    while True:
        if os.getppid() != caller or received:
            return None
        status = _reap(worker)
        if status is not None:
            return status
        ready = {fd for fd, _ in poller.poll()}
        if lifeline in ready and not os.read(lifeline, 4096):
            return None  # the caller died, or closed the lifeline to have the worker ended
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 4096):
                    pass


def _reap(worker: int) -> int | None:
    """Reap every child that has ended; the worker's wait status if it was among them."""
    status = None
    while True:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == worker:
            status = code


def _children_files(pid: int) -> list[int] | None:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []  # it has just gone
    out: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(map(int, f.read().split()))
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended
            return None  # a kernel without CONFIG_PROC_CHILDREN
        except OSError:
            continue
    return out


def _parents() -> dict[int, int]:
    parent_of = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    parent_of[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return parent_of


def descendants(root: int) -> list[int] | None:
    """Every descendant of ``root`` (zombies included), from Linux /proc; None elsewhere."""
    if not os.path.isdir("/proc/self/task"):
        return None
    children: Callable[[int], list[int] | None] = _children_files
    if _children_files(os.getpid()) is None:
        table = _parents()

        def children(pid: int) -> list[int] | None:
            return [c for c, p in table.items() if p == pid]

    found: list[int] = []
    todo = [root]
    while todo:
        kids = children(todo.pop()) or []
        found.extend(kids)
        todo.extend(kids)
    return found


def _sweep(worker: int, status: int | None) -> int | None:
    """Kill every descendant until none is left (SIGKILL stops a process from forking, and the
    orphans of killed ones re-parent here, so this ends); returns the worker's status."""
    deadline = time.monotonic() + SWEEP_TIMEOUT
    me = os.getpid()
    while True:
        found = descendants(me)
        if found is None:
            return status
        for pid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        reaped = _reap(worker)
        if reaped is not None:
            status = reaped
        if not found or time.monotonic() > deadline:
            return status
        time.sleep(0.002)


def _end(worker: int, status: int | None, subreaper: bool) -> NoReturn:
    """End every process the worker started, then exit as the worker did."""
    if status is None:  # the caller is gone or wants the worker ended
        with contextlib.suppress(OSError):
            os.kill(worker, signal.SIGKILL)
    if subreaper:
        status = _sweep(worker, status)
    elif status is None:
        # No subreaper: the worker's process group (this keeper leads it) is the best there is.
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(0), signal.SIGKILL)
    if status is None:
        status = _wait(worker)
    _exit_like(status)


def _wait(worker: int) -> int | None:
    """The worker's wait status once reaped (within a few seconds), else None."""
    deadline = time.monotonic() + SWEEP_TIMEOUT
    while time.monotonic() < deadline:
        status = _reap(worker)
        if status is not None:
            return status
        time.sleep(0.005)
    return None


def _exit_like(status: int | None) -> NoReturn:
    """Exit with the worker's status, or be killed by the same signal (without a core dump)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if status is None:
        os._exit(70)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        prctl(PR_SET_DUMPABLE, 0)  # dying of the worker's SIGSEGV must not dump this process
        with contextlib.suppress(ValueError, OSError):
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with contextlib.suppress(ValueError, OSError):  # SIGKILL refuses a disposition
            signal.signal(signum, signal.SIG_DFL)
        with contextlib.suppress(ValueError, OSError):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
            os.kill(os.getpid(), signum)
        os._exit(128 + signum)
    os._exit(os.waitstatus_to_exitcode(status))


def watch_keeper(fd: int) -> None:
    """In the worker: end it (and its process group) when the keeper is gone.

    Linux has PDEATHSIG for this; elsewhere a thread blocked on the keeper's pipe does it.
    """

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 1):
                pass
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(0), signal.SIGKILL)
        os._exit(70)

    threading.Thread(target=watch, daemon=True, name="dryml-keeper-watch").start()
