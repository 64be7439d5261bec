"""One real two-node Ray cluster (loopback) for the whole session; dryml pointed at it.

Ray must be installed and must start: a missing Ray or a cluster that does not come up fails
every test here (nothing is skipped). The tests run only in a network namespace of their own
(``python3 -m nox -s ray`` starts them so), where Ray can listen on loopback only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import ray  # noqa: F401 - no Ray is a failure here, not a skip
from cluster import RAY_ENV, RayCluster
from isolated_net import interfaces

import dryml.context as dc


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """The cluster; dryml's executor is ``ray`` at its address for the session."""
    if interfaces() != ["lo"]:
        pytest.fail(
            f"the Ray tests start a cluster whose servers would listen on this machine's "
            f"network (interfaces {interfaces()}); run them in a network namespace of their "
            "own: `python3 -m nox -s ray`, or `unshare --net -- python "
            "tests/ray/isolated_net.py pytest tests/ray` as root")
    saved = {k: os.environ.get(k) for k in (*RAY_ENV, "RAY_ADDRESS")}
    os.environ.update(RAY_ENV)
    cluster = RayCluster()
    try:
        cluster.start()
        os.environ["RAY_ADDRESS"] = cluster.address
        dc.configure(executor="ray", address=cluster.address)
        yield cluster
    finally:
        dc.configure()
        import ray as ray_module

        ray_module.shutdown()
        cluster.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def cluster(ray_cluster: RayCluster) -> Iterator[RayCluster]:
    """The cluster, with no warm actor left over from another test."""
    yield ray_cluster
    dc.shutdown_workers()
