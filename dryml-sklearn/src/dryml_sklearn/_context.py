"""Prepares a worker process for scikit-learn: thread counts from the CPUs granted.

``OMP_NUM_THREADS`` and the BLAS variables are set by the caller; joblib's ``n_jobs=-1`` is
bounded by ``LOKY_MAX_CPU_COUNT``; threadpoolctl caps native pools already loaded, and sets
them again before each call that follows one that changed them. Estimators can read
``dryml.context.current_context().cpu_threads('sklearn')`` for an explicit ``n_jobs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dryml.context import ComputeContext

__all__ = ["CONTEXT", "SklearnContext"]


class SklearnContext:
    """The ``sklearn`` compute context."""

    def environment(self, ctx: ComputeContext) -> dict[str, str]:
        """Variables the worker starts with."""
        return {"LOKY_MAX_CPU_COUNT": str(ctx.cpu_threads("sklearn"))}

    def prepare(self, ctx: ComputeContext) -> None:
        """Import scikit-learn and cap native thread pools at the CPUs granted."""
        import sklearn  # noqa: F401 - warm the import

        from dryml.context import NativeThreadLimits

        NativeThreadLimits.shared(ctx.cpu_threads("sklearn"))

    def before_call(self, ctx: ComputeContext) -> None:
        """The granted limits again, should the last call have changed them (its own
        ``threadpool_limits(...)`` left in place); a few microseconds when nothing changed."""
        from dryml.context import NativeThreadLimits

        NativeThreadLimits.restore_shared()


CONTEXT = SklearnContext()
