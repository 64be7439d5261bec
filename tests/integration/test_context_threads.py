"""scikit-learn and XGBoost workers get thread counts from the CPUs granted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from backend_checks import require_backend

import dryml.context as ctx
from dryml.context import FakeCpuProvider, compute_context


@pytest.fixture(autouse=True)
def fake_machine() -> Iterator[None]:
    ctx.configure(providers=[FakeCpuProvider(4)], max_workers=2)
    yield
    ctx.configure()


@compute_context()
def thread_facts(framework: str) -> dict[str, Any]:
    from threadpoolctl import threadpool_info

    current = ctx.current_context()
    assert current is not None
    return {"omp": os.environ["OMP_NUM_THREADS"], "granted": current.cpu_threads(framework),
            "pools": sorted({i["num_threads"] for i in threadpool_info()}),
            "loky": os.environ.get("LOKY_MAX_CPU_COUNT")}


def test_sklearn_threads_follow_the_cpus_granted() -> None:
    require_backend("sklearn")
    facts = thread_facts("sklearn", call_context_reqs={"sklearn": {"num_cpus": 3}})
    assert facts == {"omp": "3", "granted": 3, "pools": [3], "loky": "3"}


def test_xgboost_threads_follow_the_cpus_granted() -> None:
    require_backend("xgboost")

    @compute_context({"xgboost": {"num_cpus": 2}})
    def booster_threads() -> tuple[str, int]:
        import numpy as np
        import xgboost

        booster = xgboost.train({"tree_method": "hist"},
                                xgboost.DMatrix(np.ones((8, 2)), label=np.arange(8)), 1)
        return os.environ["OMP_NUM_THREADS"], booster.num_boosted_rounds()

    assert booster_threads() == ("2", 1)
