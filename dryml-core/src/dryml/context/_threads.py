"""Thread limits that a warm worker keeps from one call to the next.

A worker starts with the thread variables and its native thread pools set to the CPUs granted.
A call may change them (``os.environ["OMP_NUM_THREADS"] = "8"``,
``threadpoolctl.threadpool_limits(2)``); the worker sets them again before the next call, so
that no call runs with another call's limits.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["THREAD_VARS", "NativeThreadLimits", "ThreadVariables"]

#: The variables that bound the threads of OpenMP, BLAS libraries and numexpr.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class ThreadVariables:
    """The :data:`THREAD_VARS` as they are now, set back by :meth:`restore`."""

    def __init__(self) -> None:
        self.values = {var: os.environ.get(var) for var in THREAD_VARS}

    def restore(self) -> None:
        """Set back every variable that was changed (or removed) since."""
        for var, value in self.values.items():
            if os.environ.get(var) != value:
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value


class NativeThreadLimits:
    """Native thread pools (BLAS, OpenMP) loaded now, held at ``threads`` threads through
    threadpoolctl: set on creation, and set again by :meth:`restore` where a call changed
    them. Without threadpoolctl installed it does nothing (and a call cannot have used it).

    A backend's context sets the process's one with :meth:`shared` in ``prepare``, after
    importing its framework (so that its libraries are found), and calls
    :meth:`restore_shared` from ``before_call``. One per process: in a worker of several
    frameworks, each with its own limiter, each ``before_call`` would set the others' counts
    back to its own.
    """

    _shared: NativeThreadLimits | None = None

    @classmethod
    def shared(cls, threads: int) -> NativeThreadLimits:
        """The process's limiter, at the largest count asked for so far (the libraries loaded
        since are found again)."""
        current = cls._shared
        cls._shared = cls(max(threads, current.threads if current is not None else 0))
        return cls._shared

    @classmethod
    def restore_shared(cls) -> None:
        """:meth:`restore` the process's limiter, if one was set."""
        if cls._shared is not None:
            cls._shared.restore()

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._controller: Any = None
        self._limits: Any = None  # the limits last while this object exists
        try:  # an optional dependency (scikit-learn brings it), untyped: imported by name
            threadpoolctl: Any = importlib.import_module("threadpoolctl")
        except ImportError:
            return
        # finds the libraries once: the costly part
        self._controller = threadpoolctl.ThreadpoolController()
        self._limits = self._controller.limit(limits=threads)

    def restore(self) -> None:
        """The limits again, where a call changed them (microseconds when none did)."""
        if self._controller is not None and any(
                lib.num_threads != self.threads for lib in self._controller.lib_controllers):
            self._limits = self._controller.limit(limits=self.threads)
