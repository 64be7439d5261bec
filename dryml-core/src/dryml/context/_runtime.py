"""The calling process's one scheduler and one pool, and running a call through them."""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from dryml.context._handle import WorkerHandle
from dryml.context._pool import Pool, WorkerInfo
from dryml.context._resources import Requirement, ResourceProvider, normalize_requirement
from dryml.context._scheduler import Grant, Scheduler
from dryml.errors import ResourcesUnavailableError

__all__ = ["call_begun", "check_not_shut_down", "configure", "execute", "execute_local",
           "get_pool", "local_workers", "out_of_band",
           "resources", "shutdown_local", "shutdown_workers", "workers"]

_pool: Pool | None = None
_lock = threading.Lock()
# How many times shutdown_workers() ran. A call remembers the count when it begins
# (call_begun) and is refused workers once it changed: a call still encoding its arguments
# when the workers were shut down (a search's Ctrl-C) must not start fresh ones and run.
_shutdowns = 0
_begun_at: contextvars.ContextVar[int | None] = contextvars.ContextVar("dryml_call_begun",
                                                                        default=None)
_settings: dict[str, Any] = {"providers": None, "max_workers": None, "idle_timeout": 300.0}


def _after_fork_in_child() -> None:
    """A forked child starts with no pool: the parent's workers are the parent's."""
    global _pool, _lock
    pool, _pool, _lock = _pool, None, threading.Lock()
    if pool is not None:
        atexit.unregister(pool.shutdown)
        for worker in list(pool.workers):
            worker.forget()
        pool.workers = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def call_begun() -> Iterator[None]:
    """Mark a call from this thread as begun: if :func:`shutdown_workers` runs before it
    reaches a worker, it fails (:func:`check_not_shut_down`) instead of starting new ones."""
    token = _begun_at.set(_shutdowns)
    try:
        yield
    finally:
        _begun_at.reset(token)


def check_not_shut_down() -> None:
    """Raise :class:`ResourcesUnavailableError` when the call this thread began (see
    :func:`call_begun`) has seen :func:`shutdown_workers` run since."""
    begun = _begun_at.get()
    if begun is not None and begun != _shutdowns:
        raise ResourcesUnavailableError(
            "the workers were shut down (shutdown_workers) while this call was being "
            "prepared: it did not run; call again to start fresh workers")


def get_pool() -> Pool:
    """The process-wide pool (created on first use)."""
    global _pool
    with _lock:
        check_not_shut_down()  # under the lock: a shutdown bumps the count under it too
        if _pool is None:
            _pool = Pool(Scheduler(_settings["providers"]), _settings["max_workers"],
                         _settings["idle_timeout"])
        return _pool


def configure(*, providers: Iterable[ResourceProvider] | None = None,
              max_workers: int | None = None, idle_timeout: float = 300.0,
              executor: str | None = None, address: str | None = None) -> None:
    """Stop every worker and start over with new settings.

    ``executor``: where calls run, a name from the ``dryml_executors`` hook: ``"local"`` (this
    machine's warm worker pool) or ``"ray"`` (warm Ray actors; ``dryml-core[ray]``); default:
    ``DRYML_EXECUTOR``, else local. ``address``: the Ray cluster (default: ``RAY_ADDRESS``,
    else a Ray instance started on this machine). See docs/cluster.md.

    ``providers``: resource providers to use instead of the plugins' (tests pass
    ``[CpuProvider(), FakeGpuProvider(4)]``); ``max_workers``: the cap on live workers (default:
    the number of resources, between 2 and 8); ``idle_timeout``: seconds an idle worker lives.
    """
    from dryml.context import _executor

    if address is not None and executor is None:
        executor = "ray"
    _executor.set_default(executor, {"address": address} if address is not None else {})
    shutdown_workers()
    with _lock:
        _settings.update(providers=None if providers is None else list(providers),
                         max_workers=max_workers, idle_timeout=idle_timeout)


def shutdown_workers() -> None:
    """Stop every worker of this process, on every executor (the next call starts fresh ones).

    Calls under way in other threads fail: those running in a worker with
    :class:`~dryml.errors.WorkerCrashedError`, those still preparing (encoding their
    arguments, waiting for room) with :class:`~dryml.errors.ResourcesUnavailableError`."""
    from dryml.context._executor import shutdown_executors

    global _shutdowns
    with _lock:  # first, so that a call begun before cannot reach a new executor or pool
        _shutdowns += 1
    shutdown_executors()
    shutdown_local()


def shutdown_local() -> None:
    """Stop the local pool's workers."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown()


def workers() -> list[WorkerInfo]:
    """The live workers of this process (on every executor): pid, resources, busy or idle."""
    from dryml.context._executor import LocalExecutor, started_executors

    found = local_workers()
    for executor in started_executors():
        if not isinstance(executor, LocalExecutor):
            found.extend(executor.workers())
    return found


def local_workers() -> list[WorkerInfo]:
    """The local pool's live workers."""
    return [] if _pool is None else _pool.info()


def resources() -> dict[str, float]:
    """Every resource the scheduler knows, with the amount not granted to any worker."""
    return get_pool().scheduler.free()


def execute(reqs: Requirement | None, msg: dict[str, Any], *, call_timeout: float | None,
            resource_timeout: float | None) -> dict[str, Any]:
    """Run a call message on the chosen executor (see :mod:`dryml.context._executor`)."""
    from dryml.context._executor import LOCAL, chosen_executor, get_executor

    name, options = chosen_executor()
    if name == LOCAL:
        return execute_local(reqs, msg, call_timeout=call_timeout,
                             resource_timeout=resource_timeout)
    reply: dict[str, Any] = get_executor(name, options).execute(
        reqs, msg, call_timeout=call_timeout, resource_timeout=resource_timeout)
    return reply


def out_of_band() -> int | None:
    """The size from which the chosen executor takes array buffers out of band (its
    ``out_of_band`` attribute: the Ray executor ships them through its object store), or None
    (the local pool: buffers travel inside the message)."""
    from dryml.context._executor import LOCAL, chosen_executor, get_executor

    name, options = chosen_executor()
    if name == LOCAL:
        return None
    size: int | None = getattr(get_executor(name, options), "out_of_band", None)
    return size


#: Seconds a new worker may take to start when its call has a ``call_timeout`` (at least).
STARTUP_TIMEOUT = 300.0


def execute_local(reqs: Requirement | None, msg: dict[str, Any], *,
                  call_timeout: float | None, resource_timeout: float | None,
                  held: tuple[Grant, ...] = ()) -> dict[str, Any]:
    """Run a call message in a local worker that meets ``reqs``; returns the worker's reply.

    ``call_timeout`` bounds the call; with one, starting a new worker for it is bounded too,
    by :data:`STARTUP_TIMEOUT` or ``call_timeout``, whichever is longer (a framework's import
    may take longer than a short call, and a worker that never finishes starting would keep
    the caller waiting forever); ``resource_timeout`` bounds the wait for resources."""
    pool = get_pool()
    request = normalize_requirement(reqs)
    startup = None if call_timeout is None else max(call_timeout, STARTUP_TIMEOUT)
    worker = pool.checkout(request, resource_timeout, held, startup_timeout=startup)
    try:
        return worker.call(msg, call_timeout, _on_nested)
    finally:
        pool.checkin(worker)


def _on_nested(worker: WorkerHandle, payload: tuple[Any, Any, Any],
               remaining: float | None) -> dict[str, Any]:
    """Run a call a worker makes, while it waits: within the time its own call has left
    (otherwise a 2 s call_timeout would fire after a 15 s nested call), never counting on
    the resources of the workers waiting on it."""
    from dryml.context._calls import error_reply

    msg, reqs, options = payload
    try:
        return execute_local(reqs, msg,
                             call_timeout=_sooner(options.get("call_timeout"), remaining),
                             resource_timeout=_sooner(options.get("resource_timeout"), remaining),
                             held=(*worker.callers_hold, worker.grant))
    except Exception as exc:  # noqa: BLE001 - the nested caller gets it as its own error
        return error_reply(exc)


def _sooner(timeout: float | None, remaining: float | None) -> float | None:
    """The smaller of two timeouts (None: no limit)."""
    if timeout is None or remaining is None:
        return remaining if timeout is None else timeout
    return min(timeout, remaining)
