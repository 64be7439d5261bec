"""A tour of dryml.context: warm workers, resources, Objects crossing the process boundary.

Runs with dryml-core alone in a few seconds (framework-free 'default' contexts, plus four
pretend GPUs so that GPU scheduling shows on any machine).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import dryml
import dryml.context as ctx
from dryml import Object


class Tally(Object):
    """An Object whose state (beyond its arguments) is saved by its hooks."""

    dry_mut = True

    def __init__(self, step: int) -> None:
        self.total = 0
        self.step = step

    def save_object_imp(self, store: Any) -> None:
        store.put("total", self.total)

    def load_object_imp(self, store: Any) -> None:
        self.total = store.get("total")


@ctx.compute_context(update_objs=True)
def add_step(tally: Tally, times: int) -> int:
    """Runs in a worker; ``tally`` arrives as .dry bytes and its new state comes back."""
    tally.total += tally.step * times
    return os.getpid()


@ctx.compute_context({"default": {"gpu/0": 0.5, "cpu/0": 0.25}})
def on_half_a_gpu() -> dict[str, Any]:
    current = ctx.current_context()
    assert current is not None
    return {"visible": os.environ["CUDA_VISIBLE_DEVICES"],
            "share": dict(current.shares["default"])}


def main() -> None:
    # 1. A call runs in a warm worker; the Object's new state comes back in place.
    tally = Tally(step=3)
    first = add_step(tally, 2)
    second = add_step(tally, 1)
    assert first == second != os.getpid(), "the same warm worker served both calls"
    assert tally.total == 9
    print(f"worker {first} served two calls; tally.total is now {tally.total}")

    # 2. context_check: a default worker is not a TensorFlow context.
    def needs_tf() -> None:
        ctx.context_check({"tf": {}})

    try:
        ctx.compute_context()(needs_tf)()
    except ctx.ContextIncompatibilityError as exc:
        print("as expected:", exc)

    # 3. Scheduling: four pretend GPUs; two calls share gpu/0 half and half, never more.
    ctx.configure(providers=[ctx.CpuProvider(), ctx.FakeGpuProvider(4)])
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(on_half_a_gpu()))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        print("granted", r["share"], "and saw CUDA_VISIBLE_DEVICES =", r["visible"])

    # 4. A request that can never be met fails at once, saying what exists.
    try:
        on_half_a_gpu(call_context_reqs={"default": {"num_gpus": 5}})
    except ctx.ResourcesUnavailableError as exc:
        print("as expected:", exc)
    print("live workers:", [(w.pid, dict(w.shares)) for w in ctx.workers()])
    ctx.shutdown_workers()
    assert dryml.context is ctx


if __name__ == "__main__":
    main()
