"""Prepares a worker process for XGBoost: ``nthread`` from the CPUs granted.

XGBoost's default ``nthread`` is OpenMP's maximum, which ``OMP_NUM_THREADS`` (set by the caller)
bounds; models can read ``dryml.context.current_context().cpu_threads('xgboost')`` to pass
``nthread``/``n_jobs`` explicitly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dryml.context import ComputeContext

__all__ = ["CONTEXT", "XGBoostContext"]


class XGBoostContext:
    """The ``xgboost`` compute context."""

    def environment(self, ctx: ComputeContext) -> dict[str, str]:
        """Variables the worker starts with."""
        return {"OMP_NUM_THREADS": str(ctx.cpu_threads("xgboost"))}

    def prepare(self, ctx: ComputeContext) -> None:
        """Import XGBoost (so the first call does not pay for it)."""
        import xgboost  # noqa: F401


CONTEXT = XGBoostContext()
