"""``compute_context``: run a function in a worker that meets its requirements."""

from __future__ import annotations

import functools
import math
import numbers
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from dryml.context import _nested
from dryml.context._calls import apply_reply, encode_call
from dryml.context._lifecycle import enter_compute, leave_compute
from dryml.context._resources import Requirement, normalize_requirement, requirement_of_objects
from dryml.context._runtime import call_begun, execute, out_of_band
from dryml.context._state import current_context
from dryml.errors import ArgumentError, ConfigurationError

if TYPE_CHECKING:
    from dryml._object import Object

__all__ = ["compute", "compute_context"]

R = TypeVar("R")
#: What decorating gives: the function's own arguments plus the ``call_*`` keywords.
ComputeFunction = Callable[..., R]
_UNSET: Any = object()


def compute_context(ctx_reqs: Requirement | None = None, *, update_objs: bool = False,
                    call_timeout: float | None = None,
                    resource_timeout: float | None = None
                    ) -> Callable[[Callable[..., R]], ComputeFunction[R]]:
    """Decorate a function (or method) so that each call runs in a compute context.

    ``ctx_reqs`` is ``{framework: {resource: amount}}``; ``None`` takes the frameworks of the
    Objects passed in (``'default'`` when there are none). Each call may override with the
    keyword arguments ``call_context_reqs=``, ``call_update_objs=``, ``call_timeout=`` and
    ``call_resource_timeout=``.

    Outside any context the call runs in a warm worker process prepared for the requirement;
    inside a worker whose context satisfies it, it runs inline (unless it has a
    ``call_timeout``: nothing could stop it there); otherwise the worker asks its caller's
    scheduler for a suitable worker. Objects passed in travel as ``.dry`` bytes; with
    ``update_objs`` their new state comes back into the caller's objects in place. An
    exception raised by the function is raised in the caller, with the remote traceback as its
    ``__cause__``; a worker that dies raises :class:`~dryml.errors.WorkerCrashedError`, one
    that runs past ``call_timeout`` seconds (starting its worker included) raises
    :class:`TimeoutError`. ``call_timeout`` is a number of seconds > 0, ``resource_timeout``
    one >= 0 (``None``: no limit), ``update_objs`` a bool; anything else raises
    :class:`~dryml.errors.ConfigurationError` (a ``ValueError``) or
    :class:`~dryml.errors.ArgumentError` (a ``TypeError``) before anything runs.
    """
    _check_timeout("call_timeout", call_timeout, allow_zero=False)
    _check_timeout("resource_timeout", resource_timeout, allow_zero=True)
    _check_flag("update_objs", update_objs)

    def decorate(fn: Callable[..., R]) -> ComputeFunction[R]:
        if getattr(fn, "__dry_context_wrapped__", False):
            return fn

        @functools.wraps(fn)
        def wrapper(*args: Any, call_context_reqs: Any = _UNSET, call_update_objs: Any = _UNSET,
                    call_timeout: Any = _UNSET, call_resource_timeout: Any = _UNSET,
                    **kwargs: Any) -> R:
            reqs = ctx_reqs if call_context_reqs is _UNSET else call_context_reqs
            if reqs is None:
                reqs = requirement_of_objects([args, kwargs])
            normalize_requirement(reqs)  # reject a malformed requirement here, at once
            update = update_objs if call_update_objs is _UNSET else _check_flag(
                "call_update_objs", call_update_objs)
            timeout = default_timeout if call_timeout is _UNSET else _check_timeout(
                "call_timeout", call_timeout, allow_zero=False)
            wait = resource_timeout if call_resource_timeout is _UNSET else _check_timeout(
                "call_resource_timeout", call_resource_timeout, allow_zero=True)
            ctx = current_context()
            if ctx is not None and ctx.satisfies(reqs):
                entered = enter_compute([args, kwargs])
                try:
                    return fn(*args, **kwargs)
                finally:
                    leave_compute(entered)
            carried: list[Object] = []
            if ctx is not None:  # in a worker: the caller's scheduler finds one
                msg = encode_call(fn, args, kwargs, update, found=carried)
                reply = _nested.forward(msg, reqs, {"call_timeout": timeout,
                                                    "resource_timeout": wait})
            else:
                with call_begun():
                    msg = encode_call(fn, args, kwargs, update, out_of_band(), found=carried)
                    reply = execute(reqs, msg, call_timeout=timeout, resource_timeout=wait)
            return apply_reply(reply, args, kwargs, carried)  # type: ignore[no-any-return]

        wrapper.__dry_context_wrapped__ = True  # type: ignore[attr-defined]
        return wrapper

    default_timeout = call_timeout
    return decorate


def _check_timeout(name: str, value: Any, allow_zero: bool) -> float | None:
    """``value`` as a number of seconds (None: no limit), or raise saying what is allowed."""
    least = ">= 0" if allow_zero else "> 0"
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{name} must be a number of seconds {least}, or None for no "
                            f"limit; got {value!r} ({type(value).__name__})")
    seconds = float(value)
    if (not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero)
            or seconds > threading.TIMEOUT_MAX):
        raise ConfigurationError(f"{name} must be a number of seconds {least} (at most "
                                 f"{threading.TIMEOUT_MAX:.3g}), or None for no limit; got "
                                 f"{value!r}")
    return seconds


def _check_flag(name: str, value: Any) -> bool:
    """``value`` if it is a bool, else raise saying what is allowed."""
    if not isinstance(value, bool):
        raise ArgumentError(f"{name} must be True or False, got {value!r} "
                            f"({type(value).__name__})")
    return value


def compute(fn: Callable[..., R]) -> ComputeFunction[R]:
    """``compute_context()`` with every default: requirements from the Objects passed in."""
    return compute_context()(fn)
