"""A tour of dryml.repo: keep every run, find the best ones, check the repository.

Run: ``python docs/examples/repo_tour.py`` (takes about a second).
"""

from __future__ import annotations

import random
import tempfile

from dryml import Object, ObjectDef
from dryml.repo import In, Range, Repo, Selector


class Model(Object):
    """A stand-in for a model: remembers its hyperparameters."""

    def __init__(self, layers: int, lr: float = 0.1, opt: str = "adam") -> None:
        self.layers, self.lr, self.opt = layers, lr, opt


class Run(Object):
    """One training run of a model on a dataset."""

    def __init__(self, model: Model, dataset: str) -> None:
        self.model, self.dataset = model, dataset


def main() -> None:
    """Add 60 runs with metrics, then query them a few ways."""
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Repo(f"{tmp}/runs", create=True)
        for layers in (1, 2, 3):
            for lr in (0.1, 0.01):
                config = ObjectDef(Run, ObjectDef(Model, layers, lr=lr), "mnist")
                for _ in range(10):  # ten seeds of each configuration
                    repo.add_object(config.build(),
                                    metadata={"metrics": {"accuracy": rng.uniform(0.8, 0.99)}})
        print(f"{len(repo)} runs in {repo.directory}")

        deep = Selector(Run, args=(Selector(Model, args=(In(2, 3),), kwargs={"lr": 0.01}),))
        print("deep, slow-learning runs:", len(repo.get(deep)))

        best = repo.get(Selector(Run), order_by="metrics.accuracy", descending=True, limit=3)
        for run in best:  # only these three files are read, when .model is used
            acc = repo.metadata(run)["metrics"]["accuracy"]
            print(f"  {run.model.layers} layers, lr={run.model.lr}: accuracy {acc:.3f}")

        config = ObjectDef(Run, ObjectDef(Model, 3, lr=0.1), "mnist")
        good = repo.get(config, where={"metrics.accuracy": Range(0.9, None)})
        print(f"runs of {config.args[0].cls.__name__}(3, lr=0.1) above 0.9:", len(good))

        report = repo.check()
        print("index matches the files:", report.ok)
        assert report.ok and len(repo) == 60


if __name__ == "__main__":
    main()
