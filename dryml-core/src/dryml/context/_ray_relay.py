"""Reports from calls on Ray to a service on the driver's machine (a search's pruner).

A search with a pruner has each trial report every epoch and ask whether to stop; the answer
comes from the pruner's study, kept in files beside the driver's Repo. Locally the worker opens
those files itself. A trial on another node of a cluster cannot, so the ``ray`` executor starts
one :class:`ReportRelay` actor pinned to the driver's node (``NodeAffinitySchedulingStrategy``,
not soft): a trial's reporter sends each report to it, the relay hands it to the reporter made
there from the same arguments, and sends the answer back. Nothing but the driver's machine ever
touches the study's files, so no shared file system is needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["ReportRelay", "relay_reporter"]

Reporter = Callable[[int, dict[str, float]], bool]


class ReportRelay:
    """The relay actor's class (made a Ray actor by the executor; calls run one at a time)."""

    def __init__(self) -> None:
        self.reporters: dict[str, Reporter] = {}
        self.reports = 0

    def ready(self) -> str:
        """The node this relay runs on (the driver's)."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def report(self, factory: str, args: dict[str, Any], step: int,
               logs: dict[str, float]) -> bool:
        """Hand one report to the reporter ``factory(args)`` (made once per ``args``, e.g.
        once per trial); whether the call that reported should stop."""
        key = json.dumps([factory, args], sort_keys=True, default=str)
        reporter = self.reporters.get(key)
        if reporter is None:
            from dryml.records import load_ref

            reporter = self.reporters[key] = load_ref(factory)(args)
        self.reports += 1
        return bool(reporter(step, logs))

    def count(self) -> int:
        """Reports relayed so far."""
        return self.reports


def relay_reporter(relay: dict[str, str], factory: str, args: dict[str, Any]) -> Reporter:
    """In a Ray worker: a reporter that sends each report through the relay named by ``relay``
    (``{"name": ..., "namespace": ...}``, from :meth:`RayExecutor.report_relay`)."""
    import ray

    handle = ray.get_actor(relay["name"], namespace=relay["namespace"])

    def report(step: int, logs: dict[str, float]) -> bool:
        plain = {k: float(v) for k, v in logs.items() if isinstance(v, int | float)}
        return bool(ray.get(handle.report.remote(factory, args, int(step), plain)))

    return report
