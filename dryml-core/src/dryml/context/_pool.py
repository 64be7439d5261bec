"""The warm worker pool: workers keyed by context, kept after a call, reused by the next.

A worker holds its grant for as long as it lives (its framework keeps the GPU memory it took),
so idle workers are stopped when a request needs what they hold, when the pool is at its cap,
or after ``idle_timeout`` seconds.
"""

from __future__ import annotations

import atexit
import math
import os
import threading
import time
import warnings
from collections.abc import Mapping

import attrs

from dryml.context._handle import WorkerHandle
from dryml.context._resources import Request
from dryml.context._scheduler import Grant, Scheduler
from dryml.context._threads import THREAD_VARS
from dryml.errors import BackendUnavailableError, ResourcesUnavailableError

__all__ = ["DEATH_CHECK", "Pool", "WorkerInfo"]

#: Seconds between looks at whether an idle worker was killed from outside.
DEATH_CHECK = 2.0


@attrs.frozen
class WorkerInfo:
    """What :func:`dryml.context.workers` reports about one worker."""

    pid: int
    shares: Mapping[str, Mapping[str, float]]
    busy: bool


def context_plugins(frameworks: list[str]) -> dict[str, str]:
    """``{framework: impl ref}`` from ``dryml_contexts``; BackendUnavailableError if missing."""
    from dryml.plugins import get_plugin_manager

    found = {rec.framework: rec.impl
             for rec in get_plugin_manager().iter_records("dryml_contexts")}
    out = {}
    for fw in frameworks:
        if fw == "default":
            continue
        if fw not in found:
            raise BackendUnavailableError(
                f"no installed plugin provides the {fw!r} compute context (known: "
                f"{sorted(found) or 'none'}); install its backend, e.g. pip install dryml-{fw}")
        out[fw] = found[fw]
    return out


def worker_env(grant: Grant, plugins: Mapping[str, str]) -> dict[str, str]:
    """The environment a worker starts with: only its GPUs visible, threads = CPUs granted."""
    from dryml.context._state import ComputeContext
    from dryml.records import load_ref

    env = dict(os.environ)
    gpus = sorted((r for r in grant.resources.values() if r.kind == "gpu"),
                  key=lambda r: r.index)
    env.setdefault("PYTHONUNBUFFERED", "1")  # a worker's prints show when they happen
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(r.info.get("uuid", r.index)) for r in gpus)
    cpus = sum(a for n, a in grant.totals().items() if n.startswith("cpu/"))
    for var in THREAD_VARS:
        env[var] = str(max(1, math.ceil(cpus - 1e-9)))
    ctx = ComputeContext.from_grant(grant.to_dict())
    for ref in plugins.values():
        env.update(load_ref(ref).environment(ctx))
    return env


class Pool:
    """Warm workers for one caller, drawing resources from one :class:`Scheduler`."""

    def __init__(self, scheduler: Scheduler, max_workers: int | None = None,
                 idle_timeout: float = 300.0) -> None:
        self.scheduler = scheduler
        self.max_workers = max_workers or max(2, min(8, len(scheduler.resources()) or 2))
        self.idle_timeout = idle_timeout
        self.cond = scheduler.cond
        self.workers: list[WorkerHandle] = []
        #: The caller grants of each nested call waiting now (see _never_frees).
        self._nested_waits: dict[object, tuple[tuple[Grant, ...], dict[str, Request]]] = {}
        self._starting = 0
        self._closed = False
        self._reaper = threading.Thread(target=self._reap, name="dryml-pool-reaper",
                                        daemon=True)
        self._reaper.start()
        atexit.register(self.shutdown)

    # -- checkout / checkin -------------------------------------------------------------------
    def checkout(self, request: dict[str, Request], timeout: float | None = None,
                 held: tuple[Grant, ...] = (), startup_timeout: float | None = None
                 ) -> WorkerHandle:
        """A worker for ``request``: an idle warm one, or a new one once resources allow.

        ``timeout``: seconds to wait for resources; ``startup_timeout``: seconds a new worker
        may take to start (TimeoutError, and it is killed); see :class:`WorkerHandle`.

        ``held``: the grants of the workers waiting on this call (a nested call's callers,
        every level up). Their resources never free up while it waits, and a nested call may
        start a worker beyond ``max_workers``: its callers fill the slots, and would otherwise
        wait on it forever (two levels of nesting hung a 2-worker pool)."""
        self.scheduler.check_possible(request, held)
        plugins = context_plugins(list(request))
        deadline = None if timeout is None else time.monotonic() + timeout
        token = object()
        try:
            return self._checkout(request, held, plugins, deadline, timeout, token,
                                  startup_timeout)
        finally:
            if held:
                with self.cond:
                    self._nested_waits.pop(token, None)

    def _checkout(self, request: dict[str, Request], held: tuple[Grant, ...],
                  plugins: dict[str, str], deadline: float | None, timeout: float | None,
                  token: object, startup_timeout: float | None) -> WorkerHandle:
        while True:
            victim = None
            with self.cond:
                if self._closed:
                    raise ResourcesUnavailableError("the worker pool was shut down")
                # alive()'s /proc look is paid only by the worker about to be handed out
                dead = [w for w in self.workers if not w.busy and w.exited()]
                for worker in self.workers:  # most recently used first
                    if not worker.busy and worker.key == request and worker not in dead:
                        if worker.alive():
                            worker.busy = True
                            worker.callers_hold = held
                            self._nested_waits.pop(token, None)  # no longer waiting
                            return worker
                        dead.append(worker)  # being torn down after a kill
                if dead:  # died while idle (killed from outside): forget, free, look again
                    victim = dead[0]
                    self.workers.remove(victim)
            if victim is not None:
                self._retire(victim)
                continue
            with self.cond:
                grant = None
                if held or len(self.workers) + self._starting < self.max_workers:
                    grant = self.scheduler.try_acquire(request)
                if grant is not None:
                    self._starting += 1
                    self._nested_waits.pop(token, None)  # no longer waiting
                else:
                    victim = self._victim(request)
                    if victim is None:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise ResourcesUnavailableError(
                                f"waited {timeout}s for {self._wanted(request)}; busy workers "
                                f"still hold {self._held()}{self.scheduler.blockers()}")
                        if held:
                            self._nested_waits[token] = (held, request)
                            self._never_frees(request)
                        self.cond.wait(remaining)
                        continue
                    self.workers.remove(victim)
            if victim is not None:
                self._retire(victim)
                continue
            assert grant is not None
            worker = self._start(grant, plugins, startup_timeout)
            worker.callers_hold = held
            return worker

    def _never_frees(self, request: dict[str, Request]) -> None:
        """Raise when what a waiting nested call needs is held only by workers whose own
        callers wait on nested calls too (lock held). Two threads whose calls each held one of
        two CPUs and each made a nested call waited on each other forever; one of them now
        fails at once, and the other goes on when it has."""
        blocked = tuple({id(g): g for held, _ in self._nested_waits.values()
                         for g in held}.values())
        refusal: ResourcesUnavailableError | None = None
        for _, wanted in self._nested_waits.values():
            try:
                self.scheduler.check_possible(wanted, blocked)
            except ResourcesUnavailableError as why:
                if wanted is request:
                    refusal = why
                continue
            return  # some waiting call fits once the callers that do not wait are done
        if refusal is not None:
            raise ResourcesUnavailableError(
                f"this nested call would wait forever: what it needs is held by workers whose "
                f"callers are all waiting on nested calls too ({len(self._nested_waits)} at "
                "once, e.g. threads of one search that each call another framework). Give "
                "the outer calls less, run fewer at once (e.g. a search with n_jobs=1), or "
                f"let the nested call use its caller's context. ({refusal})") from None

    def _start(self, grant: Grant, plugins: dict[str, str],
               startup_timeout: float | None) -> WorkerHandle:
        try:
            worker = WorkerHandle(grant, plugins, worker_env(grant, plugins), startup_timeout)
        except BaseException:
            with self.cond:
                self._starting -= 1
            self.scheduler.release(grant)
            raise
        with self.cond:
            self._starting -= 1
            closed = self._closed
            if not closed:
                self.workers.insert(0, worker)
        if closed:  # shut down while it started (Ctrl-C): it must not run the call, nor
            self._retire(worker)  # live on outside every pool with its resources
            raise ResourcesUnavailableError("the worker pool was shut down while a worker "
                                            "started for this call")
        return worker

    def _victim(self, request: dict[str, Request]) -> WorkerHandle | None:
        """An idle worker whose stopping lets ``request`` proceed (least recently used)."""
        idle = sorted((w for w in self.workers if not w.busy), key=lambda w: w.last_used)
        if not idle:
            return None
        if len(self.workers) + self._starting >= self.max_workers:
            return idle[0]
        for worker in idle:
            if self.scheduler.fits_with(request, [worker.grant]):
                return worker
        if self.scheduler.fits_with(request, [w.grant for w in idle]):
            return idle[0]
        return None

    def checkin(self, worker: WorkerHandle) -> None:
        """Return a worker after a call; a dead one is dropped and its resources released
        (so is every worker once the pool is shut down)."""
        if self._closed or not worker.alive():
            with self.cond:
                if worker in self.workers:
                    self.workers.remove(worker)
            self._retire(worker)
            return
        with self.cond:
            worker.busy = False
            worker.last_used = time.monotonic()
            if worker in self.workers:
                self.workers.remove(worker)
                self.workers.insert(0, worker)
            self.scheduler.notify()

    def _retire(self, worker: WorkerHandle) -> None:
        try:
            worker.stop()
        finally:  # interrupted (Ctrl-C): still end it, and never keep its claim
            try:
                worker.kill()
            finally:
                self.scheduler.release(worker.grant)

    # -- bookkeeping --------------------------------------------------------------------------
    def _wanted(self, request: dict[str, Request]) -> str:
        return str({fw: r.as_dict() for fw, r in request.items()})

    def _held(self) -> str:
        return str([dict(w.grant.totals()) for w in self.workers if w.busy])

    def _reap(self) -> None:
        while True:
            expired = []
            with self.cond:
                if self._closed:
                    return
                now = time.monotonic()
                for worker in list(self.workers):
                    # an idle worker killed from outside (the OOM killer) is let go now, not
                    # after idle_timeout: its grant held a GPU share that other programs
                    # waited for
                    if not worker.busy and (now - worker.last_used >= self.idle_timeout
                                            or worker.exited()):
                        self.workers.remove(worker)
                        expired.append(worker)
                if not expired:
                    idle = [w.last_used for w in self.workers if not w.busy]
                    wait = (min(min(idle) + self.idle_timeout - now, DEATH_CHECK)
                            if idle else None)
                    self.cond.wait(wait)
            for worker in expired:
                try:
                    self._retire(worker)
                except Exception as exc:  # noqa: BLE001 - one failed release
                    # (a ledger that was locked, or deleted) would end this thread for good, and
                    # idle workers would never be retired again
                    warnings.warn(f"dryml could not retire an idle worker cleanly: {exc}",
                                  RuntimeWarning, stacklevel=1)

    def info(self) -> list[WorkerInfo]:
        """Every worker now alive."""
        with self.cond:
            return [WorkerInfo(w.pid, {k: dict(v) for k, v in w.grant.shares.items()}, w.busy)
                    for w in self.workers]

    def shutdown(self) -> None:
        """Stop every worker (idle ones now, busy ones are killed)."""
        with self.cond:
            self._closed = True
            workers, self.workers = self.workers, []
            self.cond.notify_all()
        failed: Exception | None = None
        for worker in workers:  # every one, whatever one of them raises
            try:
                if worker.busy:
                    worker.ended_by = ("this process, which shut its workers down "
                                       "(dryml.context.shutdown_workers, configure, or its "
                                       "exit)")
                    worker.kill()
                else:
                    worker.stop(wait=0.5)
            except Exception as exc:  # noqa: BLE001 - raised below, after the others
                failed = failed or exc
            finally:
                try:
                    self.scheduler.release(worker.grant)
                except Exception as exc:  # noqa: BLE001
                    failed = failed or exc
        atexit.unregister(self.shutdown)
        if failed is not None:
            raise failed
