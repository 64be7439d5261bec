"""Every estimator the issue lists round-trips bit-identically; hostile content is refused.

Files are real ``.dry`` files written with ``save_object`` and read with ``load_object``.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dryml import Object, load_object, save_object
from dryml.errors import FormatError, UntrustedClassError
from dryml.format import read_manifest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("sklearn")
    pytest.importorskip("skops")

from sklearn import (  # noqa: E402 - after the skip
    cluster,
    compose,
    decomposition,
    ensemble,
    linear_model,
    neighbors,
    neural_network,
    pipeline,
    preprocessing,
    svm,
    tree,
)
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402

X, Y = make_classification(240, 6, n_informative=4, n_classes=3, random_state=0)
XR, YR = make_regression(240, 6, random_state=0)
XCAT = np.column_stack([X[:, :2], (X[:, 2] > 0).astype(int), (X[:, 3] * 2).round() % 3])


class Holder(Object):
    """Keeps one fitted estimator in the store."""

    def __init__(self, label: str = "") -> None:
        self.model: Any = None

    def save_object_imp(self, store: Any) -> None:
        store.put("model", self.model)

    def load_object_imp(self, store: Any) -> None:
        self.model = store.get("model")


def _column_transformer() -> Any:
    return pipeline.make_pipeline(
        compose.ColumnTransformer([
            ("num", preprocessing.StandardScaler(), [0, 1]),
            ("cat", preprocessing.OneHotEncoder(handle_unknown="ignore"), [2, 3]),
        ]),
        linear_model.LogisticRegression(max_iter=500),
    )


# (estimator, data, method): classifiers and regressors predict, transformers transform
CASES: dict[str, tuple[Any, str, str]] = {
    "LogisticRegression": (linear_model.LogisticRegression(max_iter=500), "clf", "predict_proba"),
    "LinearRegression": (linear_model.LinearRegression(), "reg", "predict"),
    "Ridge": (linear_model.Ridge(alpha=0.5), "reg", "predict"),
    "RandomForestClassifier": (ensemble.RandomForestClassifier(10, random_state=0), "clf",
                               "predict_proba"),
    "RandomForestRegressor": (ensemble.RandomForestRegressor(10, random_state=0), "reg",
                              "predict"),
    "GradientBoostingClassifier": (ensemble.GradientBoostingClassifier(
        n_estimators=10, random_state=0), "clf", "predict_proba"),
    "GradientBoostingRegressor": (ensemble.GradientBoostingRegressor(
        n_estimators=10, random_state=0), "reg", "predict"),
    "HistGradientBoostingClassifier": (ensemble.HistGradientBoostingClassifier(
        max_iter=10, random_state=0), "clf", "predict_proba"),
    "HistGradientBoostingRegressor": (ensemble.HistGradientBoostingRegressor(
        max_iter=10, categorical_features=[2, 3], random_state=0), "cat-reg", "predict"),
    "SVC": (svm.SVC(probability=True, random_state=0), "clf", "decision_function"),
    "SVR": (svm.SVR(), "reg", "predict"),
    "KNeighborsClassifier": (neighbors.KNeighborsClassifier(algorithm="ball_tree"), "clf",
                             "predict_proba"),
    "KNeighborsRegressor": (neighbors.KNeighborsRegressor(algorithm="kd_tree"), "reg",
                            "predict"),
    "StandardScaler": (preprocessing.StandardScaler(), "clf", "transform"),
    "MinMaxScaler": (preprocessing.MinMaxScaler(), "clf", "transform"),
    "OneHotEncoder": (preprocessing.OneHotEncoder(sparse_output=True), "cat", "transform"),
    "PCA": (decomposition.PCA(3, random_state=0), "clf", "transform"),
    "KMeans": (cluster.KMeans(3, n_init=2, random_state=0), "clf", "transform"),
    "MLPClassifier": (neural_network.MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0), "clf",
                      "predict_proba"),
    "MLPRegressor": (neural_network.MLPRegressor(hidden_layer_sizes=(16,), max_iter=30, random_state=0), "reg",
                     "predict"),
    "Pipeline": (pipeline.make_pipeline(preprocessing.MinMaxScaler(), decomposition.PCA(4),
                                        svm.SVC()), "clf", "decision_function"),
    "ColumnTransformer": (_column_transformer(), "cat-clf", "predict_proba"),
}


def _data(kind: str) -> tuple[np.ndarray, np.ndarray]:
    return {"clf": (X, Y), "reg": (XR, YR), "cat": (XCAT[:, 2:], Y), "cat-clf": (XCAT, Y),
            "cat-reg": (XCAT, YR)}[kind]


def _output(model: Any, method: str, x: np.ndarray) -> np.ndarray:
    out = getattr(model, method)(x)
    return out.toarray() if hasattr(out, "toarray") else np.asarray(out)


def _round_trip(model: Any, path: Path, **load: Any) -> Any:
    holder = Holder()
    holder.model = model
    save_object(holder, path)
    return load_object(path, **load).model


@pytest.mark.parametrize("name", sorted(CASES))
def test_fitted_estimator_round_trips_bit_identically(name: str, tmp_path: Path) -> None:
    estimator, kind, method = CASES[name]
    x, y = _data(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLP convergence with 30 iterations
        model = estimator.fit(x, y)
    loaded = _round_trip(model, tmp_path / f"{name}.dry")
    assert type(loaded) is type(model)
    before, after = _output(model, method, x), _output(loaded, method, x)
    assert before.dtype == after.dtype and before.shape == after.shape
    assert before.tobytes() == after.tobytes()
    assert loaded.get_params().keys() == model.get_params().keys()


def test_big_arrays_are_npy_members_and_skops_keeps_only_the_structure(tmp_path: Path) -> None:
    x, y = make_classification(3000, 6, n_informative=4, random_state=0)
    forest = ensemble.RandomForestClassifier(12, random_state=0).fit(x, y)
    path = tmp_path / "forest.dry"
    loaded = _round_trip(forest, path)
    assert len(loaded.estimators_) == 12
    assert loaded.predict_proba(x).tobytes() == forest.predict_proba(x).tobytes()
    manifest = read_manifest(path)
    arrays = [m for m in manifest.members.values() if m.kind == "npy"]
    node_bytes = sum(e.tree_.__getstate__()["nodes"].nbytes for e in forest.estimators_)
    # the trees' node arrays, concatenated, are one member
    assert any(node_bytes <= m.raw_size < node_bytes + 1024 for m in arrays)
    entry = manifest.objects[0].state["model"]
    assert entry["serializer"] == "sklearn.estimator" and entry["package"] == "dryml-sklearn"
    assert entry["meta"]["type"].endswith("RandomForestClassifier")
    skops_zip = manifest.members[entry["meta"]["skops"]]
    assert skops_zip.raw_size < sum(m.raw_size for m in arrays) / 10
    assert set(manifest.frameworks) >= {"scikit-learn", "skops"}


@pytest.mark.parametrize("state", [
    {"count": 2, "kind": "object", "shape": None, "args": None,
     "state": {"keys": ["a"], "constant": {}, "plain": {"a": [1]}, "scalars": {},
               "arrays": {}, "batches": {}, "nodes": {}}},
    {"count": 1, "kind": "object", "shape": None, "args": None,
     "state": {"keys": ["a", "b"], "constant": {"a": 1}, "plain": {}, "scalars": {},
               "arrays": {}, "batches": {}, "nodes": {}}},
    {"count": 1, "kind": "object", "shape": None, "args": None,
     "state": {"keys": ["a"], "constant": {"a": [1, 2]}, "plain": {}, "scalars": {},
               "arrays": {}, "batches": {}, "nodes": {}}},
    {"count": 1, "kind": "pickle", "shape": None, "args": None, "state": {}},
    {"count": 1, "kind": "object", "shape": [3], "args": None,
     "state": {"keys": [], "constant": {}, "plain": {}, "scalars": {}, "arrays": {},
               "batches": {}, "nodes": {}}},
    {"count": 1, "kind": "reduce", "shape": None,
     "args": {"keys": [], "constant": {}, "plain": {}},
     "state": {"keys": [], "constant": {}, "plain": {}}},
    {"count": 1, "kind": "object", "shape": None, "args": None,
     "state": {"keys": ["a"], "constant": {}, "plain": {},
               "arrays": {"a": {"empty": "O", "tail": [], "lengths": [0]}}}},
    # found by the hostile-file audit: 30 million objects from a 23 KB file, 2**40 empty rows
    # of a nested batch, and a shape whose product overflowed numpy's int64 to 0
    {"count": 5000, "kind": "object", "shape": None, "args": None,
     "state": {"keys": [], "constant": {}, "plain": {}, "scalars": {}, "arrays": {},
               "batches": {}, "nodes": {}}},
    {"count": 0, "kind": "object", "shape": [2**40, 0], "nested": True, "args": None,
     "state": {"keys": [], "constant": {}, "plain": {}, "scalars": {}, "arrays": {},
               "batches": {}, "nodes": {}}},
    {"count": 0, "kind": "object", "shape": [2**32, 2**32], "args": None,
     "state": {"keys": [], "constant": {}, "plain": {}, "scalars": {}, "arrays": {},
               "batches": {}, "nodes": {}}},
    *({"count": 2, "kind": "object", "shape": None, "args": None, "ids": ids,
       "state": {"keys": [], "constant": {}, "plain": {}, "scalars": {}, "arrays": {},
                 "batches": {}, "nodes": {}}} for ids in ([7], [7, 7], ["7", "8"], {"0": 7})),
], ids=["short-column", "missing-column", "non-plain-constant", "unknown-kind", "bad-shape",
        "calls-an-estimator-class", "object-dtype", "more-objects-than-bytes",
        "nested-empty-rows", "overflowing-shape", "ids-short", "ids-repeated", "ids-not-ints",
        "ids-not-a-list"])
def test_a_malformed_batch_of_estimators_is_a_format_error(state: dict[str, Any]) -> None:
    from skops.io._utils import LoadContext

    from dryml_sklearn._skops_batch import DrymlBatchNode

    full = {"__class__": "DecisionTreeClassifier", "__module__": "sklearn.tree._classes",
            "__loader__": "DrymlBatchNode", **state}
    with pytest.raises(FormatError):
        DrymlBatchNode(full, LoadContext(src=None, protocol=2))  # type: ignore[arg-type]


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _column_transformer().fit(XCAT, Y)
    path = tmp_path / "ct.dry"
    holder = Holder()
    holder.model = model
    save_object(holder, path)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle was used while loading")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    loaded = load_object(path).model
    assert np.array_equal(loaded.predict(XCAT), model.predict(XCAT))


class HandMadeClassifier(ClassifierMixin, BaseEstimator):
    """An estimator type from outside scikit-learn (this test module)."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> HandMadeClassifier:
        self.classes_ = np.unique(y)
        self.weights_ = np.linspace(0, 1, 4096)  # big enough to be its own member
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.classes_[0])


def test_an_estimator_type_outside_the_trusted_set_is_refused_until_trusted(
        tmp_path: Path) -> None:
    model = HandMadeClassifier().fit(X, Y)
    path = tmp_path / "hand.dry"
    holder = Holder()
    holder.model = model
    save_object(holder, path)
    name = f"{HandMadeClassifier.__module__}.HandMadeClassifier"
    with pytest.raises(UntrustedClassError) as err:
        load_object(path)
    assert name in str(err.value) and "trust=" in str(err.value)
    for trust in ([name], [HandMadeClassifier.__module__]):
        loaded = load_object(path, trust=trust).model
        assert type(loaded) is HandMadeClassifier
        assert np.array_equal(loaded.weights_, model.weights_)


def test_a_function_that_runs_commands_is_refused(tmp_path: Path) -> None:
    transformer = preprocessing.FunctionTransformer(func=os.system).fit(X)
    path = tmp_path / "fn.dry"
    holder = Holder()
    holder.model = transformer
    save_object(holder, path)
    with pytest.raises(UntrustedClassError, match="system"):
        load_object(path)


def _break_tree(model: Any) -> Any:
    tree = model.estimators_[0].tree_
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    inner = np.flatnonzero(nodes["left_child"] != -1)[0]
    nodes["left_child"][inner] = 10**6
    state["nodes"] = nodes
    tree.__setstate__(state)
    return model


def _break_predictor(model: Any) -> Any:
    predictor = model._predictors[0][0]
    inner = np.flatnonzero(predictor.nodes["is_leaf"] == 0)[0]
    predictor.nodes["feature_idx"][inner] = 999
    return model


def _break_kd_tree(model: Any) -> Any:
    state = list(model._tree.__getstate__())
    state[1] = state[1].copy()
    state[1][0] = 10**6  # a sample index past the data
    model._tree.__setstate__(tuple(state))
    return model


@pytest.mark.parametrize("build,breaker", [
    (lambda: ensemble.RandomForestClassifier(3, random_state=0).fit(X, Y), _break_tree),
    (lambda: ensemble.RandomForestClassifier(12, random_state=0).fit(X, Y), _break_tree),
    (lambda: ensemble.HistGradientBoostingClassifier(max_iter=3).fit(X, Y), _break_predictor),
    (lambda: neighbors.KNeighborsClassifier(algorithm="kd_tree").fit(X, Y), _break_kd_tree),
], ids=["decision-tree", "batched-trees", "hist-gradient-boosting", "kd-tree"])
def test_out_of_range_node_indices_are_refused_before_predict(
        build: Any, breaker: Any, tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="out of range"):
        _round_trip(breaker(build()), tmp_path / "bad.dry")


class Configured(Object):
    """Takes an estimator class as a constructor argument."""

    def __init__(self, estimator: type, **params: Any) -> None:
        self.model = estimator(**params)


def test_estimator_classes_are_trusted_constructor_arguments(tmp_path: Path) -> None:
    obj = Configured(ensemble.RandomForestClassifier, n_estimators=3)
    save_object(obj, tmp_path / "c.dry")
    loaded = load_object(tmp_path / "c.dry")
    assert loaded.dry_args[0] is ensemble.RandomForestClassifier
    assert loaded.model.get_params() == obj.model.get_params()


def test_a_class_outside_the_estimator_modules_is_refused_as_an_argument(
        tmp_path: Path) -> None:
    from sklearn.utils import Bunch

    save_object(Configured(Bunch), tmp_path / "b.dry")
    with pytest.raises(UntrustedClassError, match="sklearn.utils"):
        load_object(tmp_path / "b.dry")


def test_version_skew_warns_once_per_file(tmp_path: Path) -> None:
    from dryml.errors import DrymlVersionWarning
    from dryml.testing.serializers import rewrite_frameworks

    class Pair(Holder):
        def save_object_imp(self, store: Any) -> None:
            store.put("other", self.model)

        def load_object_imp(self, store: Any) -> None:
            store.get("other")

    obj = Pair()
    obj.model = linear_model.Ridge().fit(XR, YR)
    save_object(obj, tmp_path / "p.dry")
    skewed = tmp_path / "skewed.dry"
    skewed.write_bytes(rewrite_frameworks((tmp_path / "p.dry").read_bytes(),
                                          {"scikit-learn": "0.24.2"}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_object(skewed)
    messages = [str(w.message) for w in caught if issubclass(w.category, DrymlVersionWarning)]
    assert len(messages) == 1 and "scikit-learn 0.24.2" in messages[0]


class Wraps(Object):
    """Takes an estimator instance as a constructor argument."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator


def test_estimators_are_constructor_arguments_compared_by_parameters(tmp_path: Path) -> None:
    config = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                    linear_model.LogisticRegression(C=2.0))
    obj = Wraps(config)
    definition = obj.definition()
    assert definition.without_id() == Wraps(pipeline.make_pipeline(
        preprocessing.StandardScaler(), linear_model.LogisticRegression(C=2.0))
    ).definition().without_id()
    assert definition.without_id() != Wraps(
        linear_model.LogisticRegression(C=2.0)).definition().without_id()
    assert definition.build().dry_args[0] is not config  # an independent copy
    fitted = Wraps(ensemble.RandomForestClassifier(10, random_state=0).fit(X, Y))
    save_object(fitted, tmp_path / "w.dry")
    loaded = load_object(tmp_path / "w.dry")
    assert loaded.dry_args[0].predict_proba(X).tobytes() == \
        fitted.dry_args[0].predict_proba(X).tobytes()
    from dryml import ObjectDef

    again = ObjectDef.from_dict(definition.to_dict()).build()
    assert again.dry_args[0].get_params()["logisticregression__C"] == 2.0


def test_an_untrusted_estimator_argument_is_refused(tmp_path: Path) -> None:
    save_object(Wraps(HandMadeClassifier().fit(X, Y)), tmp_path / "h.dry")
    with pytest.raises(UntrustedClassError, match="HandMadeClassifier"):
        load_object(tmp_path / "h.dry")


def test_boosting_batches_keep_shared_objects_shared(tmp_path: Path) -> None:
    boosting = ensemble.GradientBoostingClassifier(n_estimators=12, random_state=0).fit(X, Y)
    loaded = _round_trip(boosting, tmp_path / "gb.dry")
    trees = loaded.estimators_.ravel()
    assert loaded.estimators_.shape == boosting.estimators_.shape
    assert all(t.random_state is trees[0].random_state for t in trees)
    assert loaded.predict_proba(X).tobytes() == boosting.predict_proba(X).tobytes()
    hist = ensemble.HistGradientBoostingClassifier(max_iter=12, early_stopping=False).fit(X, Y)
    loaded = _round_trip(hist, tmp_path / "hgb.dry")
    assert [len(row) for row in loaded._predictors] == [len(row) for row in hist._predictors]
    assert loaded.predict_proba(X).tobytes() == hist.predict_proba(X).tobytes()


def _voting(count: int) -> Any:
    return ensemble.VotingClassifier([(f"lr{i}", linear_model.LogisticRegression(C=0.1 * (i + 1)))
                                      for i in range(count)], voting="soft").fit(X, Y)


def _stacking(count: int) -> Any:
    return ensemble.StackingRegressor([(f"r{i}", linear_model.Ridge(alpha=i + 1.0))
                                       for i in range(count)],
                                      final_estimator=linear_model.Ridge()).fit(XR, YR)


@pytest.mark.parametrize("count", [7, 8, 12])
@pytest.mark.parametrize("build", [_voting, _stacking], ids=["voting", "stacking"])
def test_ensemble_members_are_one_object_by_index_and_by_name(
        build: Any, count: int, tmp_path: Path) -> None:
    model = build(count)
    loaded = _round_trip(model, tmp_path / "ensemble.dry")
    names = list(loaded.named_estimators_)
    assert all(loaded.named_estimators_[n] is loaded.estimators_[i] for i, n in enumerate(names))
    x = X if isinstance(model, ensemble.VotingClassifier) else XR
    method = "predict_proba" if isinstance(model, ensemble.VotingClassifier) else "predict"
    for ensemble_ in (model, loaded):  # a member edited through its name changes the ensemble
        ensemble_.named_estimators_[names[0]].intercept_ += 5.0
    assert getattr(loaded, method)(x).tobytes() == getattr(model, method)(x).tobytes()


def test_members_written_before_their_batch_load_as_the_same_objects(tmp_path: Path) -> None:
    model = _voting(8)
    # the by-name mapping first: the batch of members then refers to objects already read
    model.__dict__ = {"named_estimators_": model.named_estimators_,
                      **{k: v for k, v in vars(model).items() if k != "named_estimators_"}}
    loaded = _round_trip(model, tmp_path / "voting.dry")
    assert all(loaded.named_estimators_[f"lr{i}"] is loaded.estimators_[i] for i in range(8))
    assert loaded.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()


def test_a_batch_written_without_ids_still_loads(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:

    model = _voting(8)
    path = tmp_path / "voting.dry"
    _save_with_batches_edited(model, path, monkeypatch, lambda state: state.pop("ids"))
    loaded = load_object(path).model
    assert loaded.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()


def _save_with_batches_edited(model: Any, path: Path, monkeypatch: pytest.MonkeyPatch,
                              edit: Any) -> None:
    """Save ``model`` with ``edit`` applied to each column-wise batch's state."""
    from dryml_sklearn import _skops_batch

    batch_state = _skops_batch.batch_state

    def edited(*args: Any, **kwargs: Any) -> Any:
        state = batch_state(*args, **kwargs)
        if state is not None:
            edit(state)
        return state

    with monkeypatch.context() as patch:
        patch.setattr(_skops_batch, "batch_state", edited)
        holder = Holder()
        holder.model = model
        save_object(holder, path)


@pytest.mark.parametrize("target,message", [
    (lambda model: model, "contains itself"),
    (lambda model: model.le_, "refers to a LabelEncoder"),
], ids=["its-own-ensemble", "another-object"])
def test_a_batch_item_that_is_another_object_of_the_file_is_a_format_error(
        target: Any, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    model = _voting(8)
    path = tmp_path / "voting.dry"
    _save_with_batches_edited(model, path, monkeypatch,
                              lambda state: state["ids"].__setitem__(0, id(target(model))))
    with pytest.raises(FormatError, match=message):
        load_object(path)


# --- members that claim another width than the ensemble gives them ------------------------

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from sklearn_zoo import Holder as ZooHolder  # noqa: E402 - importable by a fresh process

BIG = 10**9

PREDICT_CRAFTED = """
import json, sys
sys.path.insert(0, sys.argv[2])
import numpy as np
import sklearn_zoo  # the Holder class
from dryml import load_object
from dryml.errors import DrymlError
try:
    model = load_object(sys.argv[1]).model
    model.predict(np.zeros((3, int(sys.argv[3]))))
    outcome, message = "predicted", ""
except DrymlError as exc:
    outcome, message = type(exc).__name__, str(exc)
except Exception as exc:  # noqa: BLE001 - a plain error is not a crash, but not dryml's
    outcome, message = "raw " + type(exc).__name__, str(exc)
print(json.dumps({"outcome": outcome, "message": message}))
"""


def _wide_tree(est: Any, width: int = BIG) -> None:
    """Give ``est`` a tree that claims ``width`` features and splits on the last one."""
    from sklearn.tree._tree import Tree

    state = est.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["feature"][0] = width - 1
    wide = Tree(width, est.tree_.n_classes, est.tree_.n_outputs)
    wide.__setstate__({**state, "nodes": nodes})
    est.tree_ = wide
    est.n_features_in_ = width


def _widen_later_stages(model: Any) -> Any:
    for est in np.ravel(model.estimators_)[1:]:
        _wide_tree(est)
    return model


def _drop_width(model: Any) -> Any:
    _wide_tree(model)
    del model.n_features_in_  # predict then checks X against nothing
    return model


def _narrow_bag(model: Any) -> Any:
    model.estimators_features_ = [cols[:2] for cols in model.estimators_features_]
    return model


@pytest.mark.parametrize("build,craft", [
    (lambda: ensemble.GradientBoostingRegressor(n_estimators=3, max_depth=2,
                                                random_state=0).fit(XR, YR),
     _widen_later_stages),
    (lambda: ensemble.GradientBoostingClassifier(n_estimators=3, max_depth=2,
                                                 random_state=0).fit(X, Y),
     _widen_later_stages),
    (lambda: ensemble.RandomForestClassifier(3, max_depth=2, random_state=0).fit(X, Y),
     _widen_later_stages),
    (lambda: ensemble.IsolationForest(n_estimators=3, random_state=0).fit(X),
     _widen_later_stages),
    (lambda: ensemble.BaggingClassifier(n_estimators=3, random_state=0).fit(X, Y), _narrow_bag),
    (lambda: tree.DecisionTreeClassifier(max_depth=2).fit(X, Y), _drop_width),
], ids=["gradient-boosting-regressor", "gradient-boosting-classifier", "forest",
        "isolation-forest", "bagging", "tree-without-width"])
def test_a_member_wider_than_its_ensemble_is_refused_at_load(
        build: Any, craft: Any, tmp_path: Path) -> None:
    # forests and gradient boosting run their trees unchecked on X: predict read past X (SIGSEGV)
    model = build()
    holder = ZooHolder()
    holder.model = model
    save_object(holder, tmp_path / "good.dry")
    holder.model = craft(model)
    save_object(holder, tmp_path / "bad.dry")
    outcomes = {}
    for name in ("good", "bad"):
        path = tmp_path / f"{name}.dry"
        done = subprocess.run([sys.executable, "-c", PREDICT_CRAFTED, str(path), str(HERE),
                               str(X.shape[1])],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, (name, done.returncode, done.stderr[-2000:])
        outcomes[name] = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcomes["good"]["outcome"] == "predicted"
    assert outcomes["bad"]["outcome"] == "FormatError", outcomes["bad"]
    assert "features" in outcomes["bad"]["message"] or "column" in outcomes["bad"]["message"]


def test_dicts_whose_keys_skops_cannot_give_back_are_refused(tmp_path: Path) -> None:
    """skops rebuilds a key by calling its type on its text: bool('false') is True, so a
    class_weight over boolean labels or a DictVectorizer's vocabulary lost entries silently
    ([[5. 7.]] became [[0.]])."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import SGDClassifier

    from dryml.errors import SerializationError

    x = np.random.default_rng(0).normal(size=(40, 3))
    y = x[:, 0] > 0
    cases = [DictVectorizer(sparse=False).fit([{True: 1.0, False: 2.0}, {False: 3.0}]),
             SGDClassifier(class_weight={False: 5.0, True: 1.0}, max_iter=5, tol=None).fit(x, y),
             SGDClassifier(class_weight={np.False_: 5.0, np.True_: 1.0}, max_iter=5,
                           tol=None).fit(x, y)]
    for model in cases:
        with pytest.raises(SerializationError, match="cannot be saved exactly .*use int keys"):
            _round_trip(model, tmp_path / "m.dry")
    weighted = SGDClassifier(class_weight={0: 5.0, 1: 1.0}, max_iter=5, tol=None,
                             random_state=0).fit(x, y.astype(int))
    loaded = _round_trip(weighted, tmp_path / "ok.dry")
    assert loaded.get_params()["class_weight"] == {0: 5.0, 1: 1.0}


def test_numpy_strings_of_several_lengths_in_a_list_of_estimators_keep_their_length(
        tmp_path: Path) -> None:
    """Eight Ridge(solver=np.str_) in a VotingRegressor: 'saga' came back 'sag' and 'lsqr'
    'lsq' (the column took the first item's dtype, <U3)."""
    from sklearn.ensemble import VotingRegressor
    from sklearn.linear_model import Ridge

    x, y = make_regression(n_samples=40, n_features=3, random_state=0)
    solvers = np.array(["sag", "saga", "svd", "saga", "lsqr", "saga", "auto", "saga"])
    model = VotingRegressor([(f"r{i}", Ridge(solver=s, random_state=0))
                             for i, s in enumerate(solvers)]).fit(x, y)
    loaded = _round_trip(model, tmp_path / "v.dry")
    assert [e.solver for e in loaded.estimators_] == solvers.tolist()
