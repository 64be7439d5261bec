"""Executors: where compute-context calls run, chosen through the ``dryml_executors`` hook.

``local`` is the warm process pool of this machine (the default); ``ray`` runs calls in warm
Ray actors of a cluster (``dryml-core[ray]``). The executor is chosen, in this order, by
:func:`using_executor` (a search's ``executor=``), by ``configure(executor=...)``, by the
``DRYML_EXECUTOR`` environment variable, else ``local``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from dryml.errors import BackendUnavailableError, ConfigurationError

__all__ = ["Executor", "LocalExecutor", "chosen_executor", "executor_names", "get_executor",
           "set_default", "shutdown_executors", "using_executor"]

LOCAL = "local"


class Executor(Protocol):
    """What an ``ExecutorRecord``'s ``impl(**options)`` returns."""

    def execute(self, reqs: Any, msg: dict[str, Any], *, call_timeout: float | None,
                resource_timeout: float | None) -> dict[str, Any]:
        """Run one call message under ``reqs``; return the reply of ``run_call``."""
        ...

    def shutdown(self) -> None:
        """Stop every worker this executor started."""
        ...

    def workers(self) -> list[Any]:
        """The live workers (:class:`dryml.context.WorkerInfo`)."""
        ...


class LocalExecutor:
    """The warm worker pool of this process (today's default), as an executor."""

    def __init__(self, **options: Any) -> None:
        if options:
            raise ConfigurationError(f"the local executor takes no options, got {options}")

    def execute(self, reqs: Any, msg: dict[str, Any], *, call_timeout: float | None,
                resource_timeout: float | None) -> dict[str, Any]:
        """Run the call in a local warm worker."""
        from dryml.context._runtime import execute_local

        return execute_local(reqs, msg, call_timeout=call_timeout,
                             resource_timeout=resource_timeout)

    def shutdown(self) -> None:
        """Stop the local pool's workers."""
        from dryml.context._runtime import shutdown_local

        shutdown_local()

    def workers(self) -> list[Any]:
        """The local pool's workers."""
        from dryml.context._runtime import local_workers

        return local_workers()


_default: dict[str, Any] = {"name": None, "options": {}}
_override: contextvars.ContextVar[tuple[str, dict[str, Any]] | None] = contextvars.ContextVar(
    "dryml_executor", default=None)
_instances: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
_lock = threading.Lock()


def executor_names() -> list[str]:
    """Every executor name the plugins register."""
    return sorted(_records())


def _records() -> dict[str, Any]:
    from dryml.plugins import get_plugin_manager

    return get_plugin_manager().records_by_name("dryml_executors")


def set_default(name: str | None, options: dict[str, Any]) -> None:
    """The executor of this process (``configure``); None: ``DRYML_EXECUTOR`` or local."""
    if name is not None:
        _check(name)
    _default.update(name=name, options=dict(options))


def _check(name: str) -> Any:
    records = _records()
    if name not in records:
        raise ConfigurationError(f"unknown executor {name!r}; the known ones are "
                                 f"{', '.join(sorted(records))}")
    return records[name]


def chosen_executor() -> tuple[str, dict[str, Any]]:
    """``(name, options)`` of the executor calls use now."""
    override = _override.get()
    if override is not None:
        return override
    if _default["name"] is not None:
        return _default["name"], dict(_default["options"])
    return os.environ.get("DRYML_EXECUTOR", "").strip() or LOCAL, {}


@contextlib.contextmanager
def using_executor(name: str | None, **options: Any) -> Iterator[None]:
    """Calls made in this block (this thread or context) use the executor ``name``."""
    if name is None:
        yield
        return
    _check(name)
    token = _override.set((name, options))
    try:
        yield
    finally:
        _override.reset(token)


def get_executor(name: str, options: dict[str, Any] | None = None) -> Any:
    """The executor ``name`` with ``options`` (created once, then reused).

    Without options, the executor that ``configure`` chose is used with its own options when
    ``name`` is that one: ``Search(executor="ray")`` after ``configure(executor="ray",
    address=...)`` runs in the configured executor's actors (a second executor beside it could
    never stop its idle actors, and its calls waited for their resources for ever).
    """
    from dryml.context._runtime import check_not_shut_down

    options = {k: v for k, v in (options or {}).items() if v is not None}
    if not options and name == _default["name"]:
        options = {k: v for k, v in _default["options"].items() if v is not None}
    key = (name, tuple(sorted(options.items())))
    with _lock:
        check_not_shut_down()  # a call begun before shutdown_workers() gets no new executor
        found = _instances.get(key)
        if found is not None:
            return found
        record = _check(name)
        from dryml.records import load_ref

        try:
            factory = load_ref(record.impl)
            if record.requires:
                __import__(record.requires)
        except ImportError as exc:
            if isinstance(exc, BackendUnavailableError):
                raise
            raise BackendUnavailableError(
                f"the {name!r} executor needs {exc.name or 'a package that is missing'}: "
                f"pip install '{record.extra or record.package}'") from exc
        executor = factory(**options)
        _instances[key] = executor
        return executor


def started_executors() -> list[Any]:
    """Executors created so far (other than through :func:`shutdown_executors`)."""
    with _lock:
        return list(_instances.values())


def shutdown_executors() -> None:
    """Stop every executor's workers and forget the executors (local's pool included)."""
    with _lock:
        executors = list(_instances.values())
        _instances.clear()
    for executor in executors:
        executor.shutdown()
