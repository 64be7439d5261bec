"""dryml on Ray: the same decorated calls and the same search, run by the ``ray`` executor.

Needs ``pip install 'dryml-core[ray]' dryml-sklearn``. With ``RAY_ADDRESS`` set it uses that
cluster; without, dryml starts a Ray instance on this machine. See docs/cluster.md.

    python3 docs/examples/cluster_ray.py
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

import dryml.context as dc
from dryml import ObjectDef
from dryml.data import NumpyDataset
from dryml.search import Float, Search

# 1. Every compute-context call of this process runs in a warm Ray actor.
dc.configure(executor="ray")


@dc.compute_context({"default": {"cpu/0": 0.5}})
def where() -> int:
    """The process this call ran in."""
    return os.getpid()


assert where() != os.getpid()  # an actor's process, not this one
assert where() == where()  # the same warm actor serves the next call
print(f"calls ran in Ray actor process {where()}; this driver is {os.getpid()}")


# 2. A search whose trials train on the cluster; the Repo stays here, with the driver.
def digits() -> tuple[NumpyDataset, NumpyDataset]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype(np.float32), y.astype(np.int64)
    return (NumpyDataset((x[:1400], y[:1400]), supervised=True),
            NumpyDataset((x[1400:], y[1400:]), supervised=True))


if __name__ == "__main__":
    from dryml_sklearn.models import Estimator, SklearnTrainable

    space = ObjectDef(SklearnTrainable, ObjectDef(
        Estimator, "sklearn.linear_model.LogisticRegression", C=Float(1e-3, 1e2, log=True),
        max_iter=300))
    train, valid = digits()
    repo = os.path.join(tempfile.mkdtemp(), "repo")
    result = Search(space, repo=repo, name="on-ray", sampler="random", n_trials=4, seed=0,
                    parallel=2, executor="ray").run(train, valid)
    print(result.leaderboard())
    assert len([t for t in result.trials if t["status"] == "complete"]) == 4
    dc.shutdown_workers()
