"""``Search(executor="ray")``: trials train on the cluster, the Repo stays with the driver,
and a driver killed with SIGKILL resumes without losing or repeating a finished trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cluster import RAY_ENV, RayCluster
from toys import Toy, blobs

from dryml import ObjectDef
from dryml.repo import Repo
from dryml.search import Float, Search

HERE = Path(__file__).parent
N_TRIALS = 6
DRIVER = """
import sys
from dryml import ObjectDef
from dryml.search import Float, Search
from toys import Toy, blobs
Search(ObjectDef(Toy, shift=Float(0.0, 4.0), pause=1.0), repo=sys.argv[1], name="k",
       sampler="random", n_trials=6, seed=5, parallel=2, executor="ray").run(blobs())
"""


def space() -> ObjectDef:
    return ObjectDef(Toy, shift=Float(0.0, 4.0), pause=1.0)


def test_a_ray_search_whose_driver_is_killed_resumes_to_exactly_n_trials(
        cluster: RayCluster, tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    env = {**os.environ, **RAY_ENV, "RAY_ADDRESS": cluster.address}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(repo_dir)], cwd=HERE, env=env)
    try:
        finished: list[dict[str, Any]] = []
        for _ in range(6000):
            if proc.poll() is not None:
                break
            if (repo_dir / ".dryml-index.sqlite").exists():
                finished = Repo(repo_dir).entries(where={"search": "k", "status": "complete"})
                if len(finished) >= 2:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the search ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    before = {e["metadata"]["trial"]: e for e in Repo(repo_dir).entries(
        where={"search": "k", "status": "complete"})}
    assert 2 <= len(before) < N_TRIALS
    result = Search(space(), repo=repo_dir, name="k", sampler="random", n_trials=N_TRIALS,
                    seed=5, parallel=2, executor="ray").run(blobs())
    complete = [t for t in result.trials if t["status"] == "complete"]
    numbers = [t["number"] for t in result.trials]
    assert len(complete) == N_TRIALS and len(set(numbers)) == len(numbers)
    for number, entry in before.items():  # nothing finished before the kill was redone
        again = next(t for t in complete if t["number"] == number)
        assert again["dry_id"] == entry["dry_id"]
        assert again["params"] == entry["metadata"]["params"]
    assert all("killed" in (t["error"] or "") for t in result.trials if t["status"] == "failed")
    repo = Repo(repo_dir)
    assert all(repo.load(t["dry_id"]).trained for t in complete)  # the driver wrote them
