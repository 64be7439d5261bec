"""Conformance suite for backends' Trainables (and any third-party backend's).

A backend describes its trainables as :class:`TrainerCase` s and subclasses
:class:`TrainerConformance` in its tests::

    # tests/sklearn/test_trainers_sklearn.py
    from dryml.repo import Selector
    from dryml.testing.trainers import TrainerCase, TrainerConformance
    from dryml_sklearn.models import Estimator, SklearnTrainable

    def build_logreg():
        return SklearnTrainable(Estimator("sklearn.linear_model:LogisticRegression",
                                          max_iter=500))

    class TestSklearnTrainers(TrainerConformance):
        cases = [TrainerCase("logreg", build_logreg, "classifier", min_score=0.9,
                             component=Selector(Estimator))]

What is checked for each case
-----------------------------
``test_train_and_eval``
    trains on a small synthetic problem (three Gaussian blobs, or a noisy linear target); the
    test score (accuracy, or R^2 for regressors) is at least ``min_score``; ``eval`` keeps the
    input's structure (batched, unbatched, indexed) and scores every example.
``test_save_load_identical``
    after ``save_object``/``load_object`` the predictions are bit-identical, in this process
    and in a fresh subprocess.
``test_resume``
    a trained model loaded from a file is trained: ``train`` again changes nothing.
``test_component_selection``
    the trainable's components are part of its definition: ``case.component`` (a Selector)
    matches the trainable through a nested ``Selector(Trainable, ...)`` query, and a Repo query
    finds it by that component.

Training follows :class:`dryml.models.Trainable`'s rules: called from the test process it runs
in a worker of the backend's framework (a real compute context) and the trained state comes
back into the object.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np

from dryml import Object, load_object, save_object

__all__ = ["TrainerCase", "TrainerConformance", "classification_data", "regression_data"]


@attrs.frozen
class TrainerCase:
    """One trainable to check: ``build()`` returns it untrained; ``task`` is "classifier" or
    "regressor"; its test score must reach ``min_score``; ``component`` (a Selector, optional)
    matches one of its components (see ``test_component_selection``)."""

    name: str
    build: Callable[[], Any]
    task: str
    min_score: float
    component: Any = None


def classification_data(n: int = 600, seed: int = 0) -> Any:
    """Three well-separated Gaussian blobs in 4 dimensions, float32 x and int64 labels."""
    from dryml.data import NumpyDataset

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int64)
    centers = np.array([[0, 0, 0, 0], [4, 0, 4, 0], [0, 4, 0, 4]], dtype=np.float32)
    x = (rng.normal(size=(n, 4)).astype(np.float32) + centers[y]).astype(np.float32)
    return NumpyDataset((x, y), supervised=True)


def regression_data(n: int = 600, seed: int = 0) -> Any:
    """A noisy linear target of 4 float32 features."""
    from dryml.data import NumpyDataset

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5, 1.0], dtype=np.float32) + 0.1 * rng.normal(size=n)
         ).astype(np.float32)
    return NumpyDataset((x, y), supervised=True)


def _score(case: TrainerCase, model: Any, data: Any) -> float:
    from dryml import metrics

    return metrics.accuracy(model, data) if case.task == "classifier" else metrics.r2(model, data)


def _data(case: TrainerCase, seed: int) -> Any:
    return (classification_data if case.task == "classifier" else regression_data)(seed=seed)


def _predictions(model: Any, data: Any) -> np.ndarray:
    return np.asarray(model.eval(data).peek()[0])


_FRESH = """
import sys, numpy as np
sys.path.insert(0, sys.argv[4])
from dryml import load_object
from dryml.testing.trainers import {data_fn}
model = load_object(sys.argv[1], trust=[sys.argv[3]])
pred = np.asarray(model.eval({data_fn}(seed=1)).peek()[0])
np.save(sys.argv[2], pred)
"""


class TrainerConformance:
    """Subclass in a backend's tests with ``cases = [TrainerCase(...), ...]``."""

    cases: ClassVar[list[TrainerCase]] = []

    @classmethod
    def _trained(cls, case: TrainerCase) -> Any:
        cache: dict[str, Any] = cls.__dict__.get("_cache") or {}
        if "_cache" not in cls.__dict__:
            cls._cache = cache  # type: ignore[attr-defined]
        if case.name not in cache:
            model = case.build()
            model.train(_data(case, seed=0))
            cache[case.name] = model
        return cache[case.name]

    def test_train_and_eval(self) -> None:
        for case in self.cases:
            model = self._trained(case)
            assert model.trained, case.name
            test = _data(case, seed=1)
            score = _score(case, model, test)
            assert score >= case.min_score, f"{case.name}: score {score} < {case.min_score}"
            out = model.eval(test.unbatch().as_indexed())
            assert (out.indexed, out.supervised, out.batched) == (True, True, False), case.name
            assert len(out) == 600, case.name
            batched = model.eval(test.unbatch().batch(7))
            assert batched.batch_size == 7 and len(batched) == 86, case.name

    def test_save_load_identical(self, tmp_path: Path) -> None:
        for case in self.cases:
            model = self._trained(case)
            test = _data(case, seed=1)
            before = _predictions(model, test)
            buf = io.BytesIO()
            save_object(model, buf)
            loaded = load_object(io.BytesIO(buf.getvalue()))
            after = _predictions(loaded, test)
            assert before.dtype == after.dtype and np.array_equal(before, after), case.name
            path = tmp_path / f"{case.name}.dry"
            save_object(model, path)
            data_fn = ("classification_data" if case.task == "classifier"
                       else "regression_data")
            out = tmp_path / f"{case.name}.npy"
            # the class's own module is trusted and importable there, as it is here
            module = type(model).__module__
            where = str(Path(sys.modules[module].__file__ or ".").parent)
            subprocess.run([sys.executable, "-c", _FRESH.format(data_fn=data_fn), str(path),
                            str(out), module.split(".")[0], where], check=True, timeout=600)
            assert np.array_equal(np.load(out), before), f"{case.name}: fresh process differs"

    def test_resume(self) -> None:
        from dryml.models import Trainable

        for case in self.cases:
            model = self._trained(case)
            buf = io.BytesIO()
            save_object(model, buf)
            loaded = load_object(io.BytesIO(buf.getvalue()))
            assert isinstance(loaded, Trainable), case.name
            assert loaded.trained, case.name
            test = _data(case, seed=1)
            before = _predictions(loaded, test)
            loaded.train(_data(case, seed=5))  # already trained: nothing changes
            assert np.array_equal(_predictions(loaded, test), before), case.name

    def test_component_selection(self, tmp_path: Path) -> None:
        from dryml.models import Trainable
        from dryml.repo import Repo, Selector

        for case in self.cases:
            if case.component is None:
                continue
            model = case.build()
            definition = model.definition()
            assert _contains_match(case.component, definition), case.name
            repo = Repo(tmp_path / case.name, create=True)
            repo.add_object(model)
            repo.add_object(Holder(0))  # not a trainable: never found
            query = _selector_through(case.component, definition)
            assert query is not None, f"{case.name}: no argument holds the component"
            for selector in (query, Selector(Trainable) & query):
                found = repo.get(selector)
                assert [m.dry_id for m in found] == [model.dry_id], case.name


class Holder(Object):
    """A plain Object stored beside the trainable in ``test_component_selection``."""

    def __init__(self, value: int) -> None:
        self.value = value


def _selector_through(component: Any, definition: Any) -> Any:
    """A Selector of the definition's class that reaches ``component`` through the argument
    holding it: the component's own Selector where the argument is it, else a predicate."""
    from dryml.repo import Selector

    def holds(value: Any) -> bool:
        return _contains_match(component, value)

    for i, arg in enumerate(definition.args):
        if holds(arg):
            here = component if _matches(component, arg) else holds
            return Selector(definition.cls, args=(*[_anything] * i, here))
    for key, arg in definition.kwargs.items():
        if key != "dry_id" and holds(arg):
            here = component if _matches(component, arg) else holds
            return Selector(definition.cls, kwargs={key: here})
    return None


def _anything(value: Any) -> bool:
    return True


def _matches(selector: Any, value: Any) -> bool:
    from dryml import ObjectDef

    return isinstance(value, ObjectDef) and bool(selector(value))


def _contains_match(selector: Any, value: Any) -> bool:
    """Whether ``selector`` matches ``value`` or any definition nested in its arguments."""
    from dryml import Object, ObjectDef

    if isinstance(value, Object):
        value = value.definition()
    if isinstance(value, ObjectDef):
        if selector(value):
            return True
        children = [*value.args, *value.kwargs.values()]
    elif isinstance(value, (list, tuple)):
        children = list(value)
    elif isinstance(value, dict):
        children = list(value.values())
    else:
        return False
    return any(_contains_match(selector, child) for child in children)
