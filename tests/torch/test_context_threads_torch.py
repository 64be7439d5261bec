"""A warm torch worker gives every call the thread limits it was granted, whatever the last
call changed: torch's threads, the native (BLAS, OpenMP) pools and the thread variables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from backend_checks import require_backend

import dryml.context as ctx
from dryml.context import FakeCpuProvider, compute_context

pytestmark = pytest.mark.usefixtures("fake_machine")



@pytest.fixture(scope="module")
def fake_machine() -> Iterator[None]:
    require_backend("torch")
    pytest.importorskip("threadpoolctl")
    ctx.configure(providers=[FakeCpuProvider(4)], max_workers=2)
    yield
    ctx.configure()


TORCH = {"torch": {"num_cpus": 2}}


@compute_context(TORCH)
def limits() -> dict[str, Any]:
    import torch
    from threadpoolctl import threadpool_info

    return {"pid": os.getpid(), "torch": torch.get_num_threads(),
            "pools": sorted({(i["internal_api"], i["num_threads"]) for i in threadpool_info()}),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


@compute_context(TORCH)
def change_limits() -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(3)
    os.environ["OMP_NUM_THREADS"] = "7"


def test_a_call_that_changes_thread_limits_leaves_the_next_call_the_granted_ones() -> None:
    before = limits()
    assert before["torch"] == 2 and before["OMP_NUM_THREADS"] == "2"
    assert before["pools"] and all(n == 2 for _, n in before["pools"]), before
    change_limits()
    assert limits() == before  # the same warm worker, with the limits granted
