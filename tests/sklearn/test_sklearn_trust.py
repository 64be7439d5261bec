"""What a scikit-learn entry may hold by default, what ``trust=`` adds, Birch, padding bytes and
what a load imports (issues 10 and 11).

Files are real ``.dry`` files written with ``save_object`` and read with ``load_object``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dryml import Object, load_object, save_object
from dryml.errors import UntrustedClassError
from dryml.format import read_manifest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("sklearn")
    pytest.importorskip("skops")

from sklearn import (  # noqa: E402 - after the skip
    calibration,
    cluster,
    ensemble,
    feature_selection,
    impute,
    linear_model,
    model_selection,
    preprocessing,
    tree,
)
from sklearn import pipeline as pipeline_module  # noqa: E402
from sklearn.base import BaseEstimator, TransformerMixin  # noqa: E402
from sklearn.datasets import load_diabetes, load_iris  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from sklearn_zoo import Holder  # noqa: E402

X, Y = load_iris(return_X_y=True)
XR, YR = load_diabetes(return_X_y=True)
XR, YR = XR[:150], YR[:150]


def _round_trip(model: Any, path: Path, **load: Any) -> Any:
    holder = Holder()
    holder.model = model
    save_object(holder, path)
    return load_object(path, **load).model


def _stacking() -> Any:
    return ensemble.StackingClassifier([("a", linear_model.LogisticRegression(max_iter=300)),
                                        ("b", tree.DecisionTreeClassifier(random_state=0))])


# estimators the issue names as refused by default, each with what it is fitted on
COMMON = {
    "SimpleImputer": (lambda: impute.SimpleImputer(), "clf", "transform"),
    "SelectKBest": (lambda: feature_selection.SelectKBest(k=2), "clf", "transform"),
    "SelectKBest-chi2": (lambda: feature_selection.SelectKBest(feature_selection.chi2, k=2),
                         "clf", "transform"),
    "GridSearchCV": (lambda: model_selection.GridSearchCV(
        linear_model.LogisticRegression(max_iter=300), {"C": [0.5, 1.0]}), "clf",
        "predict_proba"),
    "CalibratedClassifierCV": (lambda: calibration.CalibratedClassifierCV(
        linear_model.LogisticRegression(max_iter=300)), "clf", "predict_proba"),
    "TweedieRegressor": (lambda: linear_model.TweedieRegressor(), "reg", "predict"),
    "StackingClassifier": (_stacking, "clf", "predict_proba"),
    "VotingRegressor": (lambda: ensemble.VotingRegressor(
        [("a", linear_model.Ridge()), ("b", linear_model.LinearRegression())]), "reg",
        "predict"),
    "FeatureAgglomeration": (lambda: cluster.FeatureAgglomeration(), "clf", "transform"),
    "SplineTransformer": (lambda: preprocessing.SplineTransformer(), "clf", "transform"),
    "KBinsDiscretizer": (lambda: preprocessing.KBinsDiscretizer(quantile_method="linear"),
                         "clf", "transform"),
}


@pytest.mark.parametrize("name", sorted(COMMON))
def test_common_estimators_load_without_trust(name: str, tmp_path: Path) -> None:
    build, kind, method = COMMON[name]
    x, y = (X, Y) if kind == "clf" else (XR, YR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build().fit(x, y)
    loaded = _round_trip(model, tmp_path / "m.dry")
    assert type(loaded) is type(model)
    before, after = (_dense(getattr(m, method)(x)) for m in (model, loaded))
    assert before.dtype == after.dtype and before.tobytes() == after.tobytes()


def _dense(out: Any) -> np.ndarray:
    return out.toarray() if hasattr(out, "toarray") else np.asarray(out)


def _save_transformer(func: Any, path: Path) -> Path:
    holder = Holder()
    holder.model = preprocessing.FunctionTransformer(func=func).fit(X)
    save_object(holder, path)
    return path


@pytest.mark.parametrize("func", [eval, exec, compile, open, getattr, __import__],
                         ids=lambda f: f.__name__)
def test_trusting_builtins_does_not_trust_its_functions(func: Any, tmp_path: Path) -> None:
    path = _save_transformer(func, tmp_path / "fn.dry")
    name = f"{func.__module__}.{func.__name__}"  # open is io.open
    for trust in ([], ["builtins"], [func.__module__]):
        with pytest.raises(UntrustedClassError) as err:
            load_object(path, trust=trust)
        assert repr(name) in str(err.value) and "exact name" in str(err.value)
    # the exact name is the explicit opt-in
    loaded = load_object(path, trust=[name]).model
    assert loaded.func is func


def double(x: Any) -> Any:
    """A user function (for the exact-name test)."""
    return x * 2


def test_a_user_function_needs_its_exact_name(tmp_path: Path) -> None:
    path = _save_transformer(double, tmp_path / "fn.dry")
    with pytest.raises(UntrustedClassError, match="double"):
        load_object(path, trust=[__name__])
    loaded = load_object(path, trust=[f"{__name__}.double"]).model
    assert loaded.transform(X).tobytes() == (X * 2).tobytes()


def _in_main() -> Any:
    namespace: dict[str, Any] = {"__name__": "__main__"}  # a function of a script
    exec("def shift(x):\n    return x + 1\n", namespace)  # noqa: S102 - the test's own code
    return namespace["shift"]


def _nested() -> Any:
    def triple(x: Any) -> Any:
        return x * 3

    return triple


def scale(x: Any) -> Any:
    """A top-level function that a nested one of the same name would load as."""
    return x


def _apply(x: Any, f: Any) -> Any:
    """A top-level function given a function as an argument (through a partial)."""
    return f(x)


def _shadowed() -> Any:
    def scale(x: Any) -> Any:
        return x * 10

    return scale


@pytest.mark.parametrize(("make", "name", "why"), [
    (lambda: lambda x: x * 2, "<lambda>", "a lambda"),
    (_nested, "triple", "a nested function"),
    (_in_main, "__main__.shift", "never imported"),
    (lambda: functools.partial(lambda x, k: x * k, k=3), "<lambda>", "a lambda"),
    (_shadowed, "scale", "holds another function of that name"),
    (lambda: functools.partial(_apply, f=_shadowed()), "scale", "another function"),
], ids=["lambda", "nested", "__main__", "partial", "shadowed", "partial-argument"])
def test_a_function_no_load_could_find_is_refused_when_saving(
        tmp_path: Path, make: Any, name: str, why: str) -> None:
    # saved, the file could never be loaded: the load error's trust= advice did not help
    from dryml.errors import SerializationError

    pipeline = pipeline_module.make_pipeline(preprocessing.FunctionTransformer(make()),
                                             linear_model.LinearRegression()).fit(X, Y)
    with pytest.raises(SerializationError, match=rf"{re.escape(name)}: .*{why}.*would not "
                       "load it.*top level of a module"):
        _round_trip(pipeline, tmp_path / "fn.dry")
    assert not (tmp_path / "fn.dry").exists()


@pytest.mark.parametrize(("make", "where"), [
    (lambda: functools.partial(_apply, f=_shadowed()), ".func.keywords['f']"),
    (lambda: functools.partial(_apply, _shadowed()), ".func.args[0]"),
    (lambda: functools.partial(_apply, f={_shadowed()}),
     ".func.keywords['f'] (a member of the set)"),
], ids=["keyword", "argument", "set-member"])
def test_the_refusal_says_where_in_a_partial_the_function_sits(
        tmp_path: Path, make: Any, where: str) -> None:
    from dryml.errors import SerializationError

    pipeline = pipeline_module.make_pipeline(preprocessing.FunctionTransformer(make()),
                                             linear_model.LinearRegression())
    with pytest.raises(SerializationError, match=re.escape(
            f"Pipeline.steps[0][1]{where}: the function ")):
        _round_trip(pipeline, tmp_path / "fn.dry")  # (unfitted: only its parameters)


class Wraps(Object):
    """Holds an estimator as a constructor argument."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator


def test_a_function_no_load_could_find_in_an_argument_is_refused_only_for_a_file(
        tmp_path: Path) -> None:
    from dryml.errors import SerializationError

    obj = Wraps(preprocessing.FunctionTransformer(_shadowed()))
    assert obj.definition().to_dict()["cls"]  # a definition's JSON is no file
    with pytest.raises(SerializationError, match="scale: its module holds another function"):
        save_object(obj, tmp_path / "arg.dry")


def test_a_nested_function_beside_its_top_level_namesake_is_refused(tmp_path: Path) -> None:
    # both were written as the top-level one, and a load used it for both
    from dryml.errors import SerializationError

    both = preprocessing.FunctionTransformer(func=scale, inverse_func=_shadowed(),
                                             check_inverse=False).fit(X)
    with pytest.raises(SerializationError, match=r"inverse_func: the function .*scale: its "
                       "module holds another function of that name"):
        _round_trip(both, tmp_path / "fn.dry")


def _renamed(fn: Any) -> Any:
    """An old-style decorator: the wrapper takes the function's __name__ only."""

    def wrapper(x: Any) -> Any:
        return fn(x)

    wrapper.__name__ = fn.__name__
    return wrapper


@_renamed
def quadruple(x: Any) -> Any:
    """A decorated user function: found under its name, as a load finds it."""
    return x * 4


def test_a_function_found_under_its_name_saves_and_loads(tmp_path: Path) -> None:
    path = _save_transformer(quadruple, tmp_path / "fn.dry")
    loaded = load_object(path, trust=[f"{__name__}.quadruple"]).model
    assert loaded.transform(X).tobytes() == (X * 4).tobytes()


class Cached(TransformerMixin, BaseEstimator):
    """Keeps a lambda while fitted, which its __getstate__ leaves out of what is saved."""

    def fit(self, x: Any, y: Any = None) -> Cached:
        self.scale_ = 2.0
        self._fn = lambda v: v * self.scale_
        return self

    def transform(self, x: Any) -> Any:
        return x * self.scale_

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_fn", None)
        return state


def test_a_function_the_estimator_does_not_save_is_no_reason_to_refuse(tmp_path: Path) -> None:
    loaded = _round_trip(Cached().fit(X), tmp_path / "m.dry", trust=[__name__])
    assert loaded.transform(X).tobytes() == (X * 2).tobytes()


@pytest.mark.parametrize("func", [np.save, np.loadtxt, os.system],
                         ids=lambda f: f.__name__)
def test_functions_that_touch_files_or_run_commands_are_refused(func: Any,
                                                                 tmp_path: Path) -> None:
    path = _save_transformer(func, tmp_path / "fn.dry")
    with pytest.raises(UntrustedClassError, match=func.__name__):
        load_object(path, trust=[func.__module__])


def test_ufuncs_and_sklearn_score_functions_are_trusted(tmp_path: Path) -> None:
    path = _save_transformer(np.log1p, tmp_path / "fn.dry")
    assert load_object(path).model.transform(X).tobytes() == np.log1p(X).tobytes()


def test_birch_round_trips_and_keeps_learning(tmp_path: Path) -> None:
    model = cluster.Birch(n_clusters=3, threshold=0.3).fit(X[:100])
    loaded = _round_trip(model, tmp_path / "birch.dry")
    for method in ("predict", "transform"):
        assert getattr(loaded, method)(X).tobytes() == getattr(model, method)(X).tobytes()
    # the CF-tree came back whole (views, leaf links): further learning gives the same model
    model.partial_fit(X[100:])
    loaded.partial_fit(X[100:])
    assert loaded.predict(X).tobytes() == model.predict(X).tobytes()
    assert loaded.subcluster_centers_.tobytes() == model.subcluster_centers_.tobytes()


def _dirty_nodes(model: Any) -> None:
    """Rebuild every tree's node array with 0xFF in its padding bytes (same field values)."""
    for est in getattr(model, "estimators_", [model]):
        state = est.tree_.__getstate__()
        clean = state["nodes"]
        dirty = np.frombuffer(b"\xff" * clean.nbytes, dtype=clean.dtype).copy()
        for field in clean.dtype.names:
            dirty[field] = clean[field]
        state["nodes"] = dirty
        est.tree_.__setstate__(state)


def _structured_arrays(path: Path) -> list[np.ndarray]:
    """Every structured array the file holds: ``.npy`` members and arrays in skops' zips."""
    from dryml.format._container import ContainerReader

    manifest = read_manifest(path)
    out = []
    with open(path, "rb") as stream:
        reader = ContainerReader(stream)
        reader.set_members(manifest.members)
        for name, info in manifest.members.items():
            if info.kind == "npy":
                array = reader.read_array(name)
                if array.dtype.names:
                    out.append(array)
                continue
            data = reader.read_bytes(name)
            if data[:2] != b"PK":
                continue
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for inner in zf.namelist():
                    if inner.endswith(".npy"):
                        array = np.load(io.BytesIO(zf.read(inner)), allow_pickle=False)
                        if array.dtype.names:
                            out.append(array)
    return out


@pytest.mark.parametrize("build", [
    lambda: tree.DecisionTreeClassifier(max_depth=2, random_state=0),  # in skops' zip
    lambda: tree.DecisionTreeClassifier(random_state=0),  # its own member
    lambda: ensemble.RandomForestClassifier(10, random_state=0),  # trees batched
], ids=["small-tree", "tree", "forest"])
def test_padding_bytes_of_tree_nodes_are_zero(build: Any, tmp_path: Path) -> None:
    clean, dirty = build().fit(X, Y), build().fit(X, Y)
    _dirty_nodes(dirty)
    _round_trip(clean, tmp_path / "clean.dry")
    loaded = _round_trip(dirty, tmp_path / "dirty.dry")
    assert loaded.predict_proba(X).tobytes() == clean.predict_proba(X).tobytes()
    written = [_structured_arrays(tmp_path / f"{n}.dry") for n in ("clean", "dirty")]
    assert written[0] and len(written[0]) == len(written[1])
    for a, b in zip(*written, strict=True):
        assert a.tobytes() == b.tobytes()
        used = np.zeros(a.dtype.itemsize, dtype=bool)
        for dtype, offset in (a.dtype.fields[n][:2] for n in a.dtype.names):
            used[offset:offset + dtype.itemsize] = True
        assert not used.all()  # the node dtype has padding
        rows = np.frombuffer(a.tobytes(), dtype=np.uint8).reshape(-1, a.dtype.itemsize)
        assert not rows[:, ~used].any()


LOAD_SCRIPT = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, sys.argv[2])
    import sklearn_zoo  # dryml and numpy only
    before = set(sys.modules)
    from dryml import load_object
    model = load_object(sys.argv[1]).model
    print(json.dumps({"type": type(model).__name__,
                      "frameworks": sorted({m.split(".")[0] for m in set(sys.modules) - before}
                                           & {"torch", "tensorflow", "keras", "xgboost",
                                              "sklearn", "jax"})}))
""")


def test_a_fresh_process_load_imports_neither_torch_nor_tensorflow(tmp_path: Path) -> None:
    path = tmp_path / "lr.dry"
    holder = Holder()
    holder.model = linear_model.LogisticRegression(max_iter=300).fit(X, Y)
    save_object(holder, path)
    done = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(path), str(HERE)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"type": "LogisticRegression", "frameworks": ["sklearn"]}


def test_other_skops_users_keep_skops_defaults(tmp_path: Path) -> None:
    import skops.io

    _round_trip(linear_model.LogisticRegression(max_iter=300).fit(X, Y), tmp_path / "m.dry")
    data = skops.io.dumps(linear_model.LogisticRegression(max_iter=300).fit(X, Y))
    assert skops.io.get_untrusted_types(data=data) == []
    assert type(skops.io.loads(data)).__name__ == "LogisticRegression"
    from scipy.special import expit

    for func in (np.log1p, expit):  # skops' default ufunc lists, computed on demand
        data = skops.io.dumps(preprocessing.FunctionTransformer(func=func).fit(X))
        assert skops.io.get_untrusted_types(data=data) == []
        assert skops.io.loads(data).func is func


def test_a_spline_whose_parts_disagree_is_refused(tmp_path: Path) -> None:
    from dryml.errors import FormatError

    model = preprocessing.SplineTransformer().fit(X)
    spline = model.bsplines_[0]
    spline._c = spline._c[:2]  # fewer coefficients than the knots need
    with pytest.raises(FormatError, match="B-spline"):
        _round_trip(model, tmp_path / "spline.dry")


def test_a_compiled_class_holding_unchecked_arrays_is_refused(tmp_path: Path) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    vi = np.linalg.inv(np.cov(X.T))
    model = KNeighborsClassifier(algorithm="ball_tree", metric="mahalanobis",
                                 metric_params={"VI": vi}).fit(X, Y)
    with pytest.raises(UntrustedClassError, match="MahalanobisDistance") as err:
        _round_trip(model, tmp_path / "knn.dry")
    assert "compiled scikit-learn class that dryml-sklearn does not check" in str(err.value)
    name = re.search(r"'(sklearn\.metrics\.[\w.]+MahalanobisDistance\w*)'", str(err.value))
    assert name is not None
    loaded = _round_trip(model, tmp_path / "knn.dry", trust=[name.group(1)])
    assert loaded.predict(X).tobytes() == model.predict(X).tobytes()


@pytest.mark.parametrize(("algorithm", "params"), [
    ("ball_tree", {"p": 3}), ("kd_tree", {"p": 4}), ("brute", {"p": 3}),
    ("ball_tree", {"p": 1.5, "metric_params": {"w": np.array([1.0, 5.0, 0.1, 2.0])}}),
    ("brute", {"p": 3, "metric_params": {"w": np.array([1.0, 5.0, 0.1, 2.0])}})])
def test_neighbors_with_a_minkowski_exponent_or_weights_load_without_trust(
        algorithm: str, params: dict[str, Any], tmp_path: Path) -> None:
    from sklearn.neighbors import KNeighborsRegressor

    model = KNeighborsRegressor(n_neighbors=3, algorithm=algorithm, **params).fit(X, Y + X[:, 0])
    loaded = _round_trip(model, tmp_path / "knn.dry")
    assert loaded.predict(X).tobytes() == model.predict(X).tobytes()
    for before, after in zip(model.kneighbors(X[:30]), loaded.kneighbors(X[:30]), strict=True):
        assert before.tobytes() == after.tobytes()  # the weights and exponent came back


@pytest.mark.parametrize(("algorithm", "p", "weights", "why"), [
    ("ball_tree", 3.0, np.ones(2), "its 2 weights do not match the 4 columns"),
    ("ball_tree", 3.0, -np.ones(4), "a weight is negative or not finite"),
    ("ball_tree", 3.0, np.full(4, np.nan), "a weight is negative or not finite"),
    ("kd_tree", 3.0, np.ones(4), "weights do not match the unweighted metric"),
    ("ball_tree", 0.0, np.ones(4), "exponent p=0.0"),
    ("ball_tree", float("nan"), np.empty(0), "exponent p=nan"),
    ("ball_tree", float("inf"), np.empty(0), "exponent p=inf")])
def test_a_minkowski_distance_that_would_misread_its_weights_is_refused(
        algorithm: str, p: float, weights: np.ndarray, why: str, tmp_path: Path) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    from dryml.errors import FormatError

    model = KNeighborsClassifier(algorithm=algorithm, p=3).fit(X, Y)
    metric = model._tree.__getstate__()[11]  # the tree's own metric object
    metric.__setstate__((p, weights, metric.__getstate__()[2]))  # as a crafted file holds it
    with pytest.raises(FormatError, match=f"Minkowski distance.*{re.escape(why)}"):
        _round_trip(model, tmp_path / "knn.dry")


_BOOLEAN = ("jaccard", "dice", "rogerstanimoto", "russellrao", "sokalsneath")


@pytest.mark.parametrize("metric", ["haversine", "canberra", "braycurtis", "hamming",
                                    *_BOOLEAN])
def test_neighbors_with_a_parameter_free_metric_load_without_trust(
        metric: str, tmp_path: Path) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    data = X[:, :2] / 4 if metric == "haversine" else (
        np.greater(X, X.mean(axis=0)) if metric in _BOOLEAN else X)
    model = KNeighborsClassifier(algorithm="ball_tree", metric=metric).fit(data, Y)
    loaded = _round_trip(model, tmp_path / "knn.dry")
    assert loaded.predict(data).tobytes() == model.predict(data).tobytes()
    assert loaded.kneighbors(data[:20])[0].tobytes() == model.kneighbors(data[:20])[0].tobytes()


def test_a_haversine_metric_in_a_tree_of_other_than_two_columns_is_refused(
        tmp_path: Path) -> None:
    from sklearn.metrics import DistanceMetric
    from sklearn.neighbors import KNeighborsClassifier

    from dryml.errors import FormatError

    model = KNeighborsClassifier(algorithm="ball_tree").fit(X, Y)  # 4 columns
    state = list(model._tree.__getstate__())
    state[11] = DistanceMetric.get_metric("haversine")  # read 2 columns of each row, unchecked
    model._tree.__setstate__(tuple(state))
    with pytest.raises(FormatError, match="haversine distance.*it measures 2 columns, not 4"):
        _round_trip(model, tmp_path / "knn.dry")


def test_a_minkowski_exponent_below_one_loads_as_scikit_learn_fits_it(tmp_path: Path) -> None:
    from sklearn.neighbors import KernelDensity

    model = KernelDensity(metric="minkowski", metric_params={"p": 0.5}).fit(X)
    loaded = _round_trip(model, tmp_path / "kde.dry")
    assert loaded.score_samples(X[:5]).tobytes() == model.score_samples(X[:5]).tobytes()


def _schema_nodes(node: Any, cls: str) -> list[dict[str, Any]]:
    """The nodes of a skops schema whose class is ``cls``."""
    found = []
    if isinstance(node, dict):
        found += [node] if node.get("__class__") == cls else []
        for child in node.values():
            found += _schema_nodes(child, cls)
    elif isinstance(node, list):
        for child in node:
            found += _schema_nodes(child, cls)
    return found


@pytest.mark.parametrize(("target", "edit", "why"), [
    ("MinkowskiDistance64", "short", "MinkowskiDistance64 in the scikit-learn data does not "
                                     "hold the state scikit-learn writes (3 parts"),
    ("EuclideanDistance64", "short", "EuclideanDistance64 in the scikit-learn data"),
    ("BallTree", "short", "BallTree in the scikit-learn data does not hold the state "
                          "scikit-learn writes (13 parts"),
    ("BallTree", "no-metric", "its distance metric is a NoneType"),
])
def test_a_tree_or_metric_state_its_compiled_loader_would_misread_is_a_format_error(
        target: str, edit: str, why: str) -> None:
    """scikit-learn's compiled trees and metrics read their saved state without bounds
    checks: a state tuple one part short crashed the process while loading, and a tree
    whose metric was null loaded and crashed at predict (found by review)."""
    from sklearn.neighbors import KNeighborsRegressor

    from dryml.errors import FormatError
    from dryml_sklearn import _skops_arrays
    from dryml_sklearn._serializers import load_estimator

    model = KNeighborsRegressor(algorithm="ball_tree", p=2 if "Euclid" in target else 3)
    data, _ = _skops_arrays.dumps(model.fit(X, Y), None)
    assert load_estimator(data, None).predict(X[:5]).tobytes() == model.predict(
        X[:5]).tobytes()  # an honest file loads

    def craft(name: str, raw: bytes) -> bytes:
        if name != "schema.json":
            return raw
        schema = json.loads(raw)
        (node,) = _schema_nodes(schema, target)
        parts = node["content"]["content"]
        if edit == "short":
            del parts[-1]
        else:
            parts[11] = {"__class__": "NoneType", "__module__": "builtins",
                         "__loader__": "JsonNode", "content": "null", "is_json": True}
        return json.dumps(schema).encode()

    with pytest.raises(FormatError, match=re.escape(why)):
        load_estimator(_rewritten(data, craft), None)


def _json(value: Any, cls: str) -> dict[str, Any]:
    return {"__class__": cls, "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(value), "is_json": True}


_EMPTY_TUPLE = {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                "content": []}
_METRICS_MODULE = "sklearn.metrics._dist_metrics"


def _as_loss(cls: str, module: str, args: list[dict[str, Any]]) -> dict[str, Any]:
    """A node skops rebuilds by calling ``cls(*args)`` (its LossNode)."""
    return {"__class__": cls, "__module__": module, "__loader__": "LossNode",
            "__reduce__": {"args": {**_EMPTY_TUPLE, "content": args}},
            "content": {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode",
                        "content": {}, "key_types": {
                            "__class__": "list", "__module__": "builtins",
                            "__loader__": "ListNode", "content": []}}}


_UNCHECKED = "compiled scikit-learn class that dryml-sklearn does not check"
_NEVER = "as scikit-learn's own files never rebuild it"
_ALLOCATES = "which can make it allocate any amount of memory"
_NOT_CONTAINER = "calls it with the file's items, and it is not that container"
_LINEAR = {"__class__": "LinearRegression", "__module__": "sklearn.linear_model._base"}


@pytest.mark.parametrize(("node", "name", "why"), [
    # a metric without state inside a BallTree: SIGSEGV at predict (Mahalanobis' buffer)
    ({"__class__": "MahalanobisDistance64", "__module__": _METRICS_MODULE,
      "__loader__": "ObjectNode"}, "MahalanobisDistance64", _UNCHECKED),
    # a state of () anywhere: SIGSEGV while loading (~50 compiled classes)
    ({"__class__": "SEuclideanDistance64", "__module__": _METRICS_MODULE,
      "__loader__": "ObjectNode", "content": _EMPTY_TUPLE}, "SEuclideanDistance64", _UNCHECKED),
    ({"__class__": "UnionFind", "__module__": "sklearn.cluster._hierarchical_fast",
      "__loader__": "ObjectNode", "content": _EMPTY_TUPLE}, "UnionFind", _UNCHECKED),
    # called with a file's number: UnionFind(125_000_000) took 5 GB from a 2 KB file
    ({"__class__": "UnionFind", "__module__": "sklearn.cluster._hierarchical_fast",
      "__loader__": "ConstructorFromReduceNode", "content": {
          **_EMPTY_TUPLE, "content": [_json(125_000_000, "int")]}}, "UnionFind", _UNCHECKED),
    # a checked class called, not rebuilt from its state
    ({"__class__": "KDTree", "__module__": "sklearn.neighbors._kd_tree",
      "__loader__": "ConstructorFromReduceNode", "content": _EMPTY_TUPLE}, "KDTree", _NEVER),
    # a tree criterion called as a loss: Gini read past an array given to it (SIGSEGV)
    (_as_loss("Gini", "sklearn.tree._criterion", [_json(10**8, "int"), _json(2, "int")]),
     "Gini", _UNCHECKED),
    # a loss given an object, not its parameters (a list node that calls a class too)
    (_as_loss("CyPinballLoss", "sklearn._loss._loss", [{**_LINEAR, "__loader__": "ObjectNode"}]),
     "CyPinballLoss", _NEVER),
    (_as_loss("CyPinballLoss", "sklearn._loss._loss", [
        {**_LINEAR, "__loader__": "ListNode", "content": []}]), "CyPinballLoss", _NEVER),
    # a Python class called with a file's arguments, as scikit-learn's files never do
    ({"__class__": "AdamOptimizer",
      "__module__": "sklearn.neural_network._stochastic_optimizers",
      "__loader__": "ConstructorFromReduceNode", "content": {
          **_EMPTY_TUPLE, "content": [{**_EMPTY_TUPLE, "__class__": "list",
                                       "__loader__": "ListNode"}]}}, "AdamOptimizer", _NEVER),
    (_as_loss("LinearRegression", "sklearn.linear_model._base", []), "LinearRegression",
     _NEVER),
    # skops' decision-tree node named after another class (it builds a Tree all the same)
    ({**_LINEAR, "__loader__": "TreeNode", "content": _json({}, "dict"), "__reduce__": {
        "args": {**_EMPTY_TUPLE, "content": [_json(1, "int")] * 3}}}, "LinearRegression",
     _NEVER),
    # a scipy class named through a scikit-learn module that imports it: lil_array((10**7,
    # 1)) took 3.3 GB from a 2 KB file
    ({"__class__": "lil_array", "__module__": "sklearn.manifold._locally_linear",
      "__loader__": "ConstructorFromReduceNode", "content": {**_EMPTY_TUPLE, "content": [
          {**_EMPTY_TUPLE, "content": [_json(10**7, "int"), _json(1, "int")]}]}},
     "lil_array", _ALLOCATES),
    # a list node calls the class it names with its items: np.ndarray([30000, 30000]), or
    # str() of a list holding itself many times over (3.3 GB from a 2.2 KB file)
    ({"__class__": "ndarray", "__module__": "numpy", "__loader__": "ListNode",
      "content": [_json(30000, "int"), _json(30000, "int")]}, "ndarray", _NOT_CONTAINER),
    ({"__class__": "str", "__module__": "builtins", "__loader__": "ListNode",
      "content": [_json(1, "int")]}, "str", _NOT_CONTAINER),
], ids=["metric-without-state", "metric-empty-state", "union-find-empty-state",
        "union-find-called", "kd-tree-called", "criterion-as-loss", "loss-of-an-object",
        "loss-of-a-listed-class", "python-class-called", "python-class-as-loss",
        "tree-node-of-another-class", "reexported-scipy-class", "array-from-a-list",
        "text-from-a-list"])
def test_a_scikit_learn_class_is_trusted_only_as_scikit_learn_rebuilds_it(
        node: dict[str, Any], name: str, why: str) -> None:
    """Compiled scikit-learn classes read their state without bounds checks: each is trusted
    by name and loader, and no class is called with a file's arguments as scikit-learn's own
    files never are (found by the hostile-file audit and its review: these loaded, then
    crashed the process, some while loading, or took gigabytes)."""
    from dryml_sklearn import _skops_arrays, _trust
    from dryml_sklearn._serializers import load_estimator

    model = linear_model.LogisticRegression(max_iter=500).fit(X, Y)
    data, _ = _skops_arrays.dumps(model, None)

    def craft(entry: str, raw: bytes) -> bytes:
        if entry != "schema.json":
            return raw
        schema = json.loads(raw)
        attrs = schema["content"]  # the estimator's attributes: one more, the crafted node
        attrs["key_types"]["content"].append(attrs["key_types"]["content"][0])  # a str
        attrs["content"]["crafted_"] = node
        return json.dumps(schema).encode()

    crafted = _rewritten(data, craft)
    found = _trust.untrusted(_skops_arrays.load_tree(crafted))  # nothing built yet
    (finding,) = [f for f in found if f.name.rsplit(".", 1)[1] == name]
    assert why in finding.why
    with pytest.raises(UntrustedClassError, match=name):
        load_estimator(crafted, None)


@pytest.mark.parametrize("make", [
    lambda: linear_model.SGDClassifier(loss="modified_huber", max_iter=5, tol=None).fit(X, Y),
    lambda: linear_model.TweedieRegressor(power=1.5, link="identity").fit(XR, YR),
    lambda: ensemble.HistGradientBoostingRegressor(loss="quantile", quantile=0.3,
                                                   max_iter=5).fit(XR, YR),
    lambda: ensemble.GradientBoostingRegressor(loss="huber", n_estimators=5).fit(XR, YR),
    lambda: ensemble.HistGradientBoostingClassifier(max_iter=5).fit(X, Y),
], ids=["sgd", "tweedie", "hgb-quantile", "gb-huber", "hgb-multiclass"])
def test_models_holding_compiled_losses_load_without_trust(make: Any, tmp_path: Path) -> None:
    model = make()
    data = X if model.n_features_in_ == X.shape[1] else XR
    loaded = _round_trip(model, tmp_path / "model.dry")
    assert loaded.predict(data).tobytes() == model.predict(data).tobytes()


def _glm_multinomial() -> Any:
    from sklearn._loss.loss import HalfMultinomialLoss

    model = linear_model.PoissonRegressor().fit(XR, np.round(YR / 50))
    model._base_loss = HalfMultinomialLoss(n_classes=3)  # score read raw[i, y[i]] (SIGSEGV)
    model.coef_, model.intercept_ = np.zeros((XR.shape[1], 3)), np.zeros(3)
    return model


def _gb_binomial_for_three() -> Any:
    from sklearn._loss.loss import HalfBinomialLoss

    model = ensemble.GradientBoostingClassifier(n_estimators=2).fit(X, Y)
    model._loss = HalfBinomialLoss()  # predict's initial predictions: one column, not three
    return model


def _gb_loss_said_not_multinomial() -> Any:
    model = ensemble.GradientBoostingClassifier(n_estimators=2).fit(X, Y)
    model._loss.is_multiclass = False  # its own state: predict took one column (SIGABRT)
    return model


def _gb_initial_estimator_narrow() -> Any:
    from sklearn.dummy import DummyClassifier

    model = ensemble.GradientBoostingClassifier(n_estimators=2).fit(X, Y)
    model.init_ = DummyClassifier(strategy="prior").fit(X, np.zeros(len(X)))  # one class
    return model


def _hgb_loss_parameter_narrow() -> Any:
    from sklearn._loss.loss import HalfMultinomialLoss

    model = ensemble.HistGradientBoostingClassifier(max_iter=2, warm_start=True).fit(X, Y)
    # continued training sizes its gradients from it (two columns for three: SIGABRT at fit)
    return model.set_params(max_iter=4, loss=HalfMultinomialLoss(n_classes=2))


_ONE_PER_ROW = "its coefficients do not make one prediction per row"
_DOES_NOT_FIT = "loss .* does not fit the predictions it makes"


@pytest.mark.parametrize(("make", "why"), [
    (_glm_multinomial, _ONE_PER_ROW),
    (_gb_binomial_for_three, _DOES_NOT_FIT),
    (_gb_loss_said_not_multinomial, _DOES_NOT_FIT),
    (_gb_initial_estimator_narrow, r"initial predictions .* one column per tree .*\(1, not 3\)"),
    (_hgb_loss_parameter_narrow, _DOES_NOT_FIT),
], ids=["glm-multinomial", "gb-loss-classes", "gb-loss-said-not-multinomial",
        "gb-initial-estimator", "hgb-loss-parameter"])
def test_a_loss_that_does_not_fit_the_models_predictions_is_refused(
        make: Any, why: str, tmp_path: Path) -> None:
    from dryml.errors import FormatError

    with pytest.raises(FormatError, match=why):
        _round_trip(make(), tmp_path / "model.dry")


def _crafted(node: dict[str, Any]) -> bytes:
    """A skops zip whose schema is ``node`` (as a hostile file would hold)."""
    from skops.io._protocol import PROTOCOL

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("schema.json", json.dumps({**node, "protocol": PROTOCOL,
                                               "_skops_version": "0.16.0"}))
    return buffer.getvalue()


@pytest.mark.parametrize("node,trust,why", [
    ({"__class__": "T", "__module__": "sklearn.tests.test_base", "__loader__": "ObjectNode"},
     ["sklearn"], "cannot be found"),
    ({"__class__": "Evil", "__module__": "__main__", "__loader__": "ObjectNode"},
     ["__main__"], "cannot be found"),
    ({"__class__": "open", "__module__": "builtins", "__loader__": "ConstructorFromReduceNode",
      "content": {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode",
                  "content": []}}, ["builtins"], "not a class"),
    ({"__class__": "check_array", "__module__": "sklearn.utils.validation",
      "__loader__": "FunctionNode"}, ["sklearn.utils"], "function called"),
], ids=["sklearn-tests", "main", "builtin-function-as-constructor", "module-trusts-no-function"])
def test_crafted_names_are_refused_whatever_the_module_trust(
        node: dict[str, Any], trust: list[str], why: str) -> None:
    from dryml_sklearn import _skops_arrays, _trust

    before = set(sys.modules)
    node = dict(node)
    if node["__class__"] == "check_array":  # trusted by its exact name only (HGB's partial)
        node["__class__"] = "check_consistent_length"
    findings = _trust.untrusted(_skops_arrays.load_tree(_crafted(node)), trust)
    assert [f.name for f in findings] == [f"{node['__module__']}.{node['__class__']}"]
    assert why in findings[0].why
    assert not {m for m in set(sys.modules) - before if ".tests" in m or m == "__main__"}


@pytest.mark.parametrize("path", ["dryml.cli.__main__:X",
                                  "sklearn.linear_model.tests.test_logistic:X"])
def test_an_estimator_path_from_a_file_imports_no_entry_point_or_test_module(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training a loaded Estimator looks its class path up: the path only had to start with a
    trusted prefix, so 'dryml.cli.__main__' ran dryml's CLI and a scikit-learn test module
    imported pytest (found by review). The trust rules of every other class path apply."""
    from dryml_sklearn._models_util import estimator_class

    module = path.split(":")[0]
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(UntrustedClassError, match="entry point or test code"):
        estimator_class(path)
    assert module not in sys.modules


def test_a_name_in_a_file_never_reaches_an_excluded_module_through_its_package(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored class named 'experimental.x' of module 'sklearn' was looked up with getattr,
    and scikit-learn's __getattr__ imported sklearn.experimental, a part dryml never imports
    for a file (found by review); the name now resolves to nothing, importing nothing."""
    import sklearn

    from dryml_sklearn._trust import _excluded, _resolve

    assert _excluded("sklearn.experimental")
    if "experimental" in vars(sklearn):  # hasattr would itself import it
        monkeypatch.delattr(sklearn, "experimental")
    monkeypatch.delitem(sys.modules, "sklearn.experimental", raising=False)
    assert _resolve("sklearn", "experimental.enable_iterative_imputer") is None
    assert "sklearn.experimental" not in sys.modules
    assert _resolve("sklearn.linear_model", "LogisticRegression") is linear_model.LogisticRegression


def _rewritten(data: bytes, edit: Any = None, compression: int = zipfile.ZIP_STORED) -> bytes:
    """A skops zip with ``edit(name, bytes) -> bytes`` applied to each entry."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, \
            zipfile.ZipFile(out, "w", compression=compression) as target:
        for name in source.namelist():
            content = source.read(name)
            target.writestr(name, edit(name, content) if edit else content)
    return out.getvalue()


def test_skops_entries_that_could_expand_or_that_claim_more_than_they_hold_are_refused(
        ) -> None:
    """A 1.9 MB file whose deflated .npy entry expanded to a 2 GB array loaded, and a header
    may claim more elements than the entry holds (numpy allocates them before it reads);
    found by the hostile-file audit."""
    from dryml.errors import FormatError
    from dryml_sklearn import _skops_arrays

    model = linear_model.LogisticRegression(max_iter=500).fit(*load_iris(return_X_y=True))
    data, _ = _skops_arrays.dumps(model, None)  # small arrays stay in the zip as .npy
    assert any(n.endswith(".npy") for n in zipfile.ZipFile(io.BytesIO(data)).namelist())
    _skops_arrays.load_tree(data)
    with pytest.raises(FormatError, match="is compressed; dryml writes every entry stored"):
        _skops_arrays.load_tree(_rewritten(data, compression=zipfile.ZIP_DEFLATED))

    def claim_more(name: str, content: bytes) -> bytes:
        if not name.endswith(".npy"):
            return content
        array = np.load(io.BytesIO(content))
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {
            "descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
            "shape": (250_000_000,)})
        return b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + array.tobytes()

    with pytest.raises(FormatError, match=r"declares \(250000000,\) of .* but holds"):
        _skops_arrays.load_tree(_rewritten(data, claim_more))

    # a sparse matrix is an .npz, a zip of its own that scipy deflates (found by review)
    import scipy.sparse

    sparse = linear_model.LogisticRegression(max_iter=500).fit(
        *load_iris(return_X_y=True)).sparsify()
    data, _ = _skops_arrays.dumps(sparse, None)
    _skops_arrays.load_tree(data)
    n = 2**23
    zeros = scipy.sparse.csr_matrix((np.zeros(n), np.zeros(n, dtype=np.int32),
                                     np.array([0, n], dtype=np.int32)), shape=(1, 4))
    packed = io.BytesIO()
    scipy.sparse.save_npz(packed, zeros, compressed=True)
    with pytest.raises(FormatError, match=r"sparse matrix .* would expand from \d+ to "
                                          r"\d+ bytes, past the limits"):
        _skops_arrays.load_tree(_rewritten(
            data, lambda name, content: packed.getvalue() if name.endswith(".npz")
            else content))


@pytest.mark.parametrize(("cls", "module", "args"), [
    ("bytearray", "builtins", [3_000_000_000]),
    ("ndarray", "numpy", [[40000, 40000]]),
    ("csr_matrix", "scipy.sparse._csr", [[3_000_000_000, 1]]),
])
def test_builtins_numpy_and_scipy_classes_called_with_arguments_from_a_file_are_refused(
        cls: str, module: str, args: list[Any]) -> None:
    """skops' ConstructorFromReduceNode calls a class with the file's arguments: an 8.7 KB
    file made bytearray(3_000_000_000), and others ndarray((40000, 40000)) or a 3e9-row
    sparse matrix (found by the hostile-file audit). Refused unless the caller trusts that
    class."""
    from dryml_sklearn import _skops_arrays, _trust

    content = {"__class__": "list", "__module__": "builtins", "__loader__": "JsonNode",
               "content": json.dumps(args), "is_json": True}
    node = {"__class__": cls, "__module__": module, "__loader__": "ConstructorFromReduceNode",
            "content": content}
    tree = _skops_arrays.load_tree(_crafted(node))
    findings = _trust.untrusted(tree)
    assert [(f.name, f.why.split(",")[0]) for f in findings] == [
        (f"{module}.{cls}", "called with arguments from the file")]
    assert _trust.untrusted(tree, [f"{module}.{cls}"]) == []  # the caller's choice


def test_plain_types_skops_writes_as_calls_load_as_before(tmp_path: Path) -> None:
    """skops writes a range (a grid search's parameter grid) as a call of its class with its
    stored values: refusing every builtin called so (as the fix above first did) refused
    it even when trusted (found by review)."""
    from sklearn.neighbors import KNeighborsClassifier

    x, y = load_iris(return_X_y=True)
    search = model_selection.GridSearchCV(KNeighborsClassifier(),
                                          {"n_neighbors": range(1, 4)}, cv=3).fit(x, y)
    loaded = _round_trip(search, tmp_path / "grid.dry", trust=["builtins.range"])
    assert loaded.param_grid == {"n_neighbors": range(1, 4)}
    assert loaded.predict(x).tobytes() == search.predict(x).tobytes()


@pytest.mark.parametrize(("make", "path", "value"), [
    (lambda: np.random.RandomState(0), ("state", "pos"), "1000000"),
    (lambda: np.random.RandomState(0), ("has_gauss",), "7"),
    (lambda: np.random.Generator(np.random.MT19937(0)), ("state", "pos"), "1000000"),
    (lambda: np.random.Generator(np.random.Philox(0)), ("buffer_pos",), "100"),
], ids=["RandomState-position", "RandomState-flag", "MT19937-position", "Philox-buffer"])
def test_a_random_state_numpy_would_read_past_its_memory_is_a_format_error(
        make: Any, path: tuple[str, ...], value: str) -> None:
    """numpy trusts a generator's position: a RandomState whose MT19937 position was set to
    10**6 in the file crashed the process (segmentation fault) at its first draw."""
    from dryml.errors import FormatError
    from dryml_sklearn import _skops_arrays
    from dryml_sklearn._serializers import load_estimator

    data, _ = _skops_arrays.dumps(make(), None)
    legacy = isinstance(make(), np.random.RandomState)
    draw = (lambda g: g.random_sample()) if legacy else (lambda g: g.random())
    assert draw(load_estimator(data, None)) == draw(make())  # an honest file loads

    def craft(name: str, raw: bytes) -> bytes:
        if name != "schema.json":
            return raw
        schema = json.loads(raw)
        node = schema["content"] if legacy else schema["content"]["bit_generator"]
        for key in path:
            node = node["content"][key]
        node["content"] = value
        return json.dumps(schema).encode()

    with pytest.raises(FormatError, match="random generator state in the file is not one "
                                          "numpy writes"):
        load_estimator(_rewritten(data, craft), None)


def test_a_seed_sequence_numpy_would_spend_minutes_on_is_a_format_error() -> None:
    """An 11 KB file whose Generator's SeedSequence asked for pool_size=750000000 ran for
    minutes at load (found by the hostile-file audit)."""
    from dryml.errors import FormatError
    from dryml_sklearn import _skops_arrays
    from dryml_sklearn._serializers import load_estimator

    data, _ = _skops_arrays.dumps(np.random.default_rng(0), None)
    assert load_estimator(data, None).random() == np.random.default_rng(0).random()

    def inflate(name: str, content: bytes) -> bytes:
        schema = json.loads(content)
        schema["content"]["seed_seq"]["content"]["pool_size"]["content"] = "30000"  # 2 s
        return json.dumps(schema).encode()

    with pytest.raises(FormatError, match="seed sequence .* not one numpy writes"):
        load_estimator(_rewritten(data, inflate), None)


def _gb_stages_widened() -> Any:
    model = ensemble.GradientBoostingRegressor(n_estimators=3, max_depth=2, init="zero")
    model.fit(XR, YR)
    model.estimators_ = np.repeat(model.estimators_, 8, axis=1)  # 8 trees, one column
    return model


def _tree_emptied() -> Any:
    from sklearn.tree._tree import NODE_DTYPE, Tree

    model = tree.DecisionTreeRegressor(max_depth=3).fit(XR, YR)
    empty = Tree(XR.shape[1], np.array([1], dtype=np.intp), 1)
    empty.__setstate__({"max_depth": 0, "node_count": 0, "nodes": np.zeros(0, NODE_DTYPE),
                        "values": np.zeros((0, 1, 1))})
    model.tree_ = empty
    return model


def _gb_values_removed() -> Any:
    from sklearn.tree._tree import Tree

    model = ensemble.GradientBoostingRegressor(n_estimators=2, max_depth=2, init="zero")
    for member in model.fit(XR, YR).estimators_[:, 0]:
        state = member.tree_.__getstate__()
        hollow = Tree(XR.shape[1], np.array([0], dtype=np.intp), 1)
        hollow.__setstate__({**state, "values": np.zeros((state["node_count"], 1, 0))})
        member.tree_ = hollow
    return model


def _hgb_mapper_shortened() -> Any:
    data = np.c_[XR[:, :3], np.arange(len(XR)) % 7]
    model = ensemble.HistGradientBoostingRegressor(max_iter=3, categorical_features=[3])
    model.fit(data, YR)
    model._bin_mapper.is_categorical_ = np.zeros(1, dtype=bool)  # one entry for 4 features
    model._bin_mapper.bin_thresholds_ = model._bin_mapper.bin_thresholds_[:1]
    return model


def _hgb_split_out_of_range() -> Any:
    categories = np.arange(len(XR)) % 7
    data = np.c_[XR[:, :3], categories]
    model = ensemble.HistGradientBoostingRegressor(max_iter=3, categorical_features=[3])
    for stage in model.fit(data, categories % 3 * 10.0)._predictors:  # split on categories
        nodes = stage[0].nodes
        split = np.flatnonzero((nodes["is_leaf"] == 0) & (nodes["is_categorical"] != 0))
        if len(split):
            nodes["feature_idx"][split[0]] = 10**6  # (an IndexError, not a FormatError, before)
            return model
    raise AssertionError("no categorical split to alter")


def _forest_depth_understated() -> Any:
    model = ensemble.RandomForestClassifier(n_estimators=2, random_state=0).fit(X, Y)
    for member in model.estimators_:
        member.tree_.__setstate__({**member.tree_.__getstate__(), "max_depth": 0})
    return model


@pytest.mark.parametrize(("make", "why"), [
    (_gb_stages_widened, "stages do not hold n_trees_per_iteration_ trees each"),
    (_tree_emptied, "node count, outputs, classes and value array do not agree"),
    (_gb_values_removed, "a stage's tree does not hold one value per node"),
    (_hgb_mapper_shortened, "bin mapper does not describe each of its features"),
    (_hgb_split_out_of_range, "a categorical split is on a feature not marked categorical"),
    (_forest_depth_understated, "its max_depth is not its depth"),
], ids=["gb-stage-width", "tree-without-nodes", "gb-tree-without-values", "hgb-bin-mapper",
        "hgb-split-feature", "tree-max-depth"])
def test_a_model_whose_compiled_predict_would_leave_its_arrays_is_refused(
        make: Any, why: str, tmp_path: Path) -> None:
    """Each passed every check and then, at predict (decision_path), wrote past an array and
    aborted the process, looped forever reading past an empty one, or returned numbers read
    from other memory (found by the hostile-file audit)."""
    from dryml.errors import FormatError

    with pytest.raises(FormatError, match=re.escape(why)):
        _round_trip(make(), tmp_path / "model.dry")


def test_a_batch_rebuilds_no_compiled_class_but_decision_trees(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dryml's batches (an ensemble's members, column-wise) hold compiled decision-tree
    storage only: one naming another compiled class is refused before anything is built."""
    from dryml_sklearn import _skops_arrays

    model = ensemble.RandomForestRegressor(n_estimators=8, max_depth=2).fit(XR, YR)
    honest = _round_trip(model, tmp_path / "honest.dry")
    assert honest.predict(XR).tobytes() == model.predict(XR).tobytes()
    dumps = _skops_arrays.dumps

    def crafted_dumps(value: Any, writer: Any) -> Any:
        data, count = dumps(value, writer)

        def craft(entry: str, raw: bytes) -> bytes:
            if entry != "schema.json":
                return raw
            schema = json.loads(raw)
            (batch,) = [n for n in _schema_nodes(schema, "DecisionTreeRegressor")
                        if n.get("__loader__") == "DrymlBatchNode"]
            batch.update({"__class__": "KDTree", "__module__": "sklearn.neighbors._kd_tree"})
            return json.dumps(schema).encode()

        return _rewritten(data, craft), count

    monkeypatch.setattr(_skops_arrays, "dumps", crafted_dumps)
    with pytest.raises(UntrustedClassError, match=r"'sklearn\.neighbors\._kd_tree\.KDTree'"):
        _round_trip(model, tmp_path / "crafted.dry")


def test_an_initial_estimator_is_checked_before_it_runs(tmp_path: Path) -> None:
    """Gradient boosting's initial predictions are checked by running its initial estimator,
    only once everything below the model is checked: an initial tree without nodes would
    loop forever reading past its empty array (checked in a child process)."""
    from sklearn.tree._tree import NODE_DTYPE, Tree

    model = ensemble.GradientBoostingClassifier(
        n_estimators=2, init=tree.DecisionTreeClassifier(max_depth=2)).fit(X, Y)
    empty = Tree(X.shape[1], np.array([3], dtype=np.intp), 1)
    empty.__setstate__({"max_depth": 0, "node_count": 0, "nodes": np.zeros(0, NODE_DTYPE),
                        "values": np.zeros((0, 1, 3))})
    model.init_.tree_ = empty
    holder = Holder()
    holder.model = model
    save_object(holder, tmp_path / "gb.dry")
    code = textwrap.dedent(f"""
        from dryml import load_object
        from dryml.errors import FormatError
        try:
            load_object({str(tmp_path / "gb.dry")!r}, trust=["sklearn_zoo"]).model
        except FormatError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr
    assert "node count, outputs, classes and value array do not agree" in done.stdout
