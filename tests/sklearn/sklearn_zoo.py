"""The scikit-learn zoo: every estimator ``sklearn.utils.all_estimators()`` lists, built with its
default parameters (meta-estimators get a simple base estimator), fitted on a small bundled data
set, and the outputs each fitted model gives.

Used by ``test_sklearn_zoo.py`` (in the test process and in the fresh subprocess that loads the
files) and runnable on its own: ``python tests/sklearn/sklearn_zoo.py`` prints the counts for
dryml, pickle and skops.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from dryml import Object

__all__ = ["METHODS", "Holder", "build_zoo", "data_for", "outputs", "same"]


class Holder(Object):
    """Keeps one fitted estimator in the store."""

    def __init__(self, label: str = "") -> None:
        self.model: Any = None

    def save_object_imp(self, store: Any) -> None:
        store.put("model", self.model)

    def load_object_imp(self, store: Any) -> None:
        self.model = store.get("model")

#: Methods whose results are compared, in this order, when the model has them and they run.
METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform",
           "score_samples", "inverse_transform")


def _datasets() -> dict[str, tuple[Any, Any]]:
    from sklearn.datasets import load_diabetes, load_digits, load_iris

    iris_x, iris_y = load_iris(return_X_y=True)
    diab_x, diab_y = load_diabetes(return_X_y=True)
    digits_x, digits_y = load_digits(return_X_y=True)
    idx = np.random.RandomState(0).permutation(len(diab_y))[:150]
    reg_x, reg_y = diab_x[idx], diab_y[idx]
    rows = np.random.RandomState(0).permutation(len(digits_y))[:200]
    words = ["red apple", "green apple pie", "blue sky", "red sky at night", "green grass",
             "apple tree", "night sky blue", "grass and trees"]
    return {
        "clf": (iris_x, iris_y),
        "reg": (reg_x, reg_y),
        "multi-clf": (iris_x, np.column_stack([iris_y, iris_y % 2])),
        "multi-reg": (reg_x, np.column_stack([reg_y, reg_y / 2])),
        "digits": (digits_x[rows], digits_y[rows]),
        "1d": (reg_x[:, 2], reg_y),
        "text": (words, np.arange(len(words)) % 2),
        "dicts": ([{"a": i, "b": i % 3, "c": "x" if i % 2 else "y"} for i in range(20)], None),
        "labels": (iris_y, None),
        "multilabel": ([(1, 2), (3,), (1, 3), (2,)], None),
        "int-clf": ((iris_x * 2).astype(int), iris_y),
        "binary": (iris_x[:100], iris_y[:100]),
        "kernel": (iris_x[:50] @ iris_x[:50].T, None),
    }


#: Estimators whose input is not a numeric matrix, by name.
_INPUT = {
    "IsotonicRegression": "1d", "CountVectorizer": "text", "HashingVectorizer": "text",
    "TfidfVectorizer": "text", "DictVectorizer": "dicts", "FeatureHasher": "dicts",
    "LabelEncoder": "labels", "LabelBinarizer": "labels", "MultiLabelBinarizer": "multilabel",
    "CategoricalNB": "int-clf", "ClassifierChain": "multi-clf", "RegressorChain": "multi-reg",
    "MultiOutputClassifier": "multi-clf", "MultiOutputRegressor": "multi-reg",
    "MultiTaskElasticNet": "multi-reg", "MultiTaskElasticNetCV": "multi-reg",
    "MultiTaskLasso": "multi-reg", "MultiTaskLassoCV": "multi-reg",
    "LatentDirichletAllocation": "digits", "NMF": "digits", "MiniBatchNMF": "digits",
    "CCA": "multi-reg", "PLSCanonical": "multi-reg", "PLSSVD": "multi-reg",
    "FixedThresholdClassifier": "binary", "TunedThresholdClassifierCV": "binary",
    "KernelCenterer": "kernel",
}


def _kind(cls: type) -> str:
    from sklearn.base import is_classifier, is_regressor

    if cls.__name__ in _INPUT:
        return _INPUT[cls.__name__]
    try:
        instance = cls.__new__(cls)
        if is_classifier(instance):
            return "clf"
        if is_regressor(instance):
            return "reg"
    except Exception:  # noqa: BLE001 - tags of a half-built estimator
        pass
    return "clf"


def _required(cls: type, kind: str) -> dict[str, Any]:
    """Arguments for the parameters without defaults (simple base estimators)."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.preprocessing import StandardScaler

    base: Any = LinearRegression() if kind in ("reg", "multi-reg") else LogisticRegression()
    pairs: Any = ([("a", LinearRegression()), ("b", LinearRegression())]
                  if kind == "reg" else [("a", LogisticRegression()),
                                         ("b", LogisticRegression(C=0.5))])
    args: dict[str, Any] = {}
    if cls.__name__ == "SelfTrainingClassifier":  # estimator=None is not accepted at fit
        args["estimator"] = base
    if cls.__name__ == "FrozenEstimator":  # wraps an already fitted estimator
        return {"estimator": base.fit(*_datasets()[kind])}
    for param in inspect.signature(cls.__init__).parameters.values():
        if param.default is not inspect.Parameter.empty or param.name == "self" or \
                param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        args[param.name] = {
            "estimator": base, "estimators": pairs,
            "steps": [("scale", StandardScaler()), ("model", base)],
            "transformers": [("scale", StandardScaler(), [0, 1]),
                             ("pass", "passthrough", [2, 3])],
            "transformer_list": [("scale", StandardScaler()), ("pass", "passthrough")],
            "param_grid": {"C": [0.5, 1.0]},
            "param_distributions": {"C": [0.5, 1.0]},
            "dictionary": np.random.RandomState(0).normal(size=(3, 4)),
        }[param.name]
    return args


def data_for(kind: str) -> tuple[Any, Any]:
    """The (X, y) of a data-set kind."""
    return _datasets()[kind]


def build_zoo() -> tuple[dict[str, tuple[Any, str]], dict[str, str]]:
    """Fitted models by estimator name with their data kind, and the estimators that could not
    be built or fitted with their reason."""
    from sklearn.utils import all_estimators

    fitted: dict[str, tuple[Any, str]] = {}
    skipped: dict[str, str] = {}
    data = _datasets()
    for name, cls in all_estimators():
        kind = _kind(cls)
        x, y = data[kind]
        try:
            model = cls(**_required(cls, kind))
        except Exception as exc:  # noqa: BLE001 - reported as not constructible
            skipped[name] = f"construct: {type(exc).__name__}: {exc}"[:200]
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if kind in ("labels", "multilabel") or y is None:
                    model.fit(x)
                else:
                    model.fit(x, y)
            except Exception as exc:  # noqa: BLE001 - reported as not fitting
                skipped[name] = f"fit: {type(exc).__name__}: {exc}"[:200]
                continue
        fitted[name] = (model, kind)
    return fitted, skipped


def _plain(out: Any) -> Any:
    if hasattr(out, "toarray"):
        out = out.toarray()
    if isinstance(out, (list, tuple)):
        return [_plain(o) for o in out]
    return np.asarray(out)


def outputs(model: Any, kind: str) -> dict[str, Any]:
    """What ``model`` gives for its training inputs, by method (methods that raise are left
    out); models with none of :data:`METHODS` give their fitted attributes' arrays."""
    x, _ = data_for(kind)
    out: dict[str, Any] = {}
    calls: list[tuple[str, Callable[[], Any]]] = []
    for method in METHODS:
        if not hasattr(model, method):
            continue
        arg: Any = x
        if method == "inverse_transform":
            if "transform" not in out:
                continue
            arg = out["transform"]
        calls.append((method, lambda m=method, a=arg: getattr(model, m)(a)))
    for method, call in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out[method] = _plain(call())
            except Exception:  # noqa: BLE001 - a method that does not apply to this model
                continue
    if not out:
        for key, value in sorted(vars(model).items()):
            if key.endswith("_") and not key.startswith("_"):
                try:
                    plain = _plain(value)
                except Exception:  # noqa: BLE001 - not array-like
                    continue
                if isinstance(plain, np.ndarray) and not plain.dtype.hasobject:
                    out[f"attr:{key}"] = plain
    return out


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Bit-for-bit equality of two :func:`outputs` results."""
    if a.keys() != b.keys():
        return False
    return all(_same(a[k], b[k]) for k in a)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
                and all(_same(x, y) for x, y in zip(a, b, strict=True)))
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.hasobject:
        return bool(all(_same_obj(x, y) for x, y in zip(a.ravel(), b.ravel(), strict=True)))
    return a.tobytes() == b.tobytes()


def _same_obj(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and _same(a, b)
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - incomparable objects
        return False
