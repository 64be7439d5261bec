"""dryml-xgboost: params and config kept, refusals, trust, missing scikit-learn."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dryml import Object, load_object, save_object
from dryml.errors import DrymlVersionWarning, SerializationError, UntrustedClassError
from dryml.testing.serializers import rewrite_frameworks, rewrite_manifest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("xgboost")
    pytest.importorskip("sklearn")
import xgboost as xgb  # noqa: E402


class Holder(Object):
    """Takes any argument; stores ``self.model`` with store.put."""

    def __init__(self, value: Any = None) -> None:
        self.value = value
        self.model: Any = None

    def save_object_imp(self, store: Any) -> None:
        store.put("model", self.model)

    def load_object_imp(self, store: Any) -> None:
        self.model = store.get("model")


def data(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 5))
    return x, (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int)


def round_trip(obj: Object) -> Any:
    buf = io.BytesIO()
    save_object(obj, buf)
    return load_object(io.BytesIO(buf.getvalue()))


def test_unfitted_model_keeps_every_param() -> None:
    obj = Holder()
    obj.model = xgb.XGBRegressor(n_estimators=7, monotone_constraints=(1, 0, -1, 0, 0),
                                 interaction_constraints=[[0, 1], [2, 3, 4]],
                                 feature_weights=np.array([1.0, 2.0, 1.0, 1.0, 0.5]),
                                 missing=-999.0, tree_method="hist", foo_extra=3)
    back = round_trip(obj).model
    assert type(back) is xgb.XGBRegressor
    before, after = obj.model.get_params(), back.get_params()
    assert np.array_equal(before.pop("feature_weights"), after.pop("feature_weights"))
    assert before == after and after["foo_extra"] == 3
    assert not back.__sklearn_is_fitted__()


def test_booster_config_attributes_and_feature_names_are_kept() -> None:
    x, y = data()
    names = [f"col{i}" for i in range(5)]
    train = xgb.DMatrix(x, label=y, feature_names=names)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.2,
                         "lambda": 2.5, "nthread": 1}, train, 30,
                        evals=[(train, "train")], early_stopping_rounds=3, verbose_eval=False)
    booster.set_attr(note="kept")
    obj = Holder()
    obj.model = booster
    back = round_trip(obj).model
    assert json.loads(back.save_config()) == json.loads(booster.save_config())
    assert back.attributes() == booster.attributes()
    assert back.best_iteration == booster.best_iteration and back.feature_names == names
    assert np.array_equal(back.predict(train), booster.predict(train))


def test_ranker_and_random_forest_round_trip() -> None:
    x, y = data()
    for model in (xgb.XGBRFClassifier(n_estimators=5, random_state=0, n_jobs=1),
                  xgb.XGBRanker(n_estimators=5, random_state=0, n_jobs=1)):
        if isinstance(model, xgb.XGBRanker):
            model.fit(x, y, qid=np.repeat(np.arange(30), 10))
        else:
            model.fit(x, y)
        obj = Holder()
        obj.model = model
        back = round_trip(obj).model
        assert type(back) is type(model)
        assert np.array_equal(back.predict(x), model.predict(x))


def test_callable_params_are_refused_with_what_to_do() -> None:
    def my_metric(predt: Any, dtrain: Any) -> tuple[str, float]:
        return "m", 0.0

    obj = Holder()
    obj.model = xgb.XGBClassifier(eval_metric=my_metric)
    with pytest.raises(SerializationError, match=r"eval_metric.*custom objectives or metrics"):
        save_object(obj, io.BytesIO())


def test_wrapper_classes_are_trusted_arguments_but_callbacks_are_not() -> None:
    buf = io.BytesIO()
    save_object(Holder(xgb.XGBClassifier), buf)
    assert load_object(io.BytesIO(buf.getvalue())).value is xgb.XGBClassifier
    data_ = buf.getvalue()

    def to_checkpoint(manifest: dict[str, Any]) -> None:
        manifest["objects"][0]["args"][0]["path"] = "xgboost.callback:TrainingCheckPoint"

    with pytest.raises(UntrustedClassError, match="xgboost.callback"):
        load_object(io.BytesIO(rewrite_manifest(data_, to_checkpoint)))


@pytest.mark.parametrize("path", ["os:system", "xgboost.core:DMatrix", "builtins:eval"])
def test_a_file_cannot_pick_a_non_xgboost_model_class(path: str) -> None:
    obj = Holder()
    obj.model = xgb.XGBClassifier(n_estimators=3)
    buf = io.BytesIO()
    save_object(obj, buf)

    def swap_class(manifest: dict[str, Any]) -> None:
        manifest["objects"][0]["state"]["model"]["meta"]["class"] = path

    with pytest.raises(UntrustedClassError, match=r"not trusted|not a subclass of XGBModel"):
        load_object(io.BytesIO(rewrite_manifest(buf.getvalue(), swap_class)))


def test_version_skew_warns_once() -> None:
    x, y = data()
    obj = Holder()
    obj.model = xgb.XGBClassifier(n_estimators=3, n_jobs=1).fit(x, y)
    buf = io.BytesIO()
    save_object(obj, buf)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_object(io.BytesIO(rewrite_frameworks(buf.getvalue(), {"xgboost": "1.7.6"})))
    skew = [w for w in caught if issubclass(w.category, DrymlVersionWarning)]
    assert len(skew) == 1 and "xgboost 1.7.6" in str(skew[0].message)


def test_loading_a_classifier_without_scikit_learn_names_the_extra(tmp_path: Path) -> None:
    x, y = data()
    obj = Holder()
    obj.model = xgb.XGBClassifier(n_estimators=3, n_jobs=1).fit(x, y)
    save_object(obj, tmp_path / "clf.dry")
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "sklearn":
                    raise ModuleNotFoundError("No module named 'sklearn'")
        sys.meta_path.insert(0, Block())
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from dryml import load_object
        from dryml.errors import BackendUnavailableError
        try:
            load_object({str(tmp_path / "clf.dry")!r}, trust=[{__name__!r}])
        except BackendUnavailableError as exc:
            print("BackendUnavailableError:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False,
                         env={**os.environ, "DRYML_REQUIRE_BACKENDS": "1"})
    assert "BackendUnavailableError:" in out.stdout, out.stderr[-2000:]
    assert "pip install 'dryml-xgboost[sklearn]'" in out.stdout


def test_loading_never_unpickles(monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    x, y = data()
    obj = Holder()
    obj.model = xgb.XGBClassifier(n_estimators=5, n_jobs=1).fit(x, y)
    buf = io.BytesIO()
    save_object(obj, buf)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("unpickling during load")

    for name in ("loads", "load", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    back = load_object(io.BytesIO(buf.getvalue())).model
    assert np.array_equal(back.predict_proba(x), obj.model.predict_proba(x))


def test_the_model_is_stored_as_xgboost_writes_it() -> None:
    """UBJSON goes in uncompressed (save at save_model's speed), byte for byte."""
    from dryml.format import read_manifest

    x, y = data()
    holder = Holder()
    holder.model = xgb.XGBClassifier(n_estimators=30, max_depth=3).fit(x, y)
    buf = io.BytesIO()
    save_object(holder, buf)
    members = read_manifest(io.BytesIO(buf.getvalue())).members
    raw = bytes(holder.model.get_booster().save_raw(raw_format="ubj"))
    (ubj,) = [info for info in members.values() if info.raw_size == len(raw)]
    assert ubj.compression == "none"
    assert raw in buf.getvalue()


def _generator_state(generator: Any) -> str:
    if isinstance(generator, np.random.RandomState):
        return str(generator.get_state())
    return str(generator.bit_generator.state)


@pytest.mark.parametrize("make", [lambda: np.random.RandomState(0),
                                  lambda: np.random.default_rng(0)],
                         ids=["RandomState", "Generator"])
def test_a_numpy_generator_random_state_is_saved_as_it_is_and_left_untouched(make: Any) -> None:
    x, y = data()
    obj = Holder()
    obj.model = xgb.XGBClassifier(n_estimators=5, subsample=0.5, n_jobs=1, random_state=make())
    before = _generator_state(obj.model.random_state)
    back = round_trip(obj).model
    # XGBoost's get_params draws a seed from the generator: saving must not
    assert _generator_state(obj.model.random_state) == before
    assert type(back.random_state) is type(obj.model.random_state)
    assert back.random_state is not obj.model.random_state
    assert _generator_state(back.random_state) == before
    fresh = xgb.XGBClassifier(n_estimators=5, subsample=0.5, n_jobs=1, random_state=make())
    expected = fresh.fit(x, y).predict_proba(x)
    assert np.array_equal(back.fit(x, y).predict_proba(x), expected)
    assert np.array_equal(obj.model.fit(x, y).predict_proba(x), expected)


def test_a_generator_numpy_does_not_build_by_default_is_refused_with_what_to_do() -> None:
    obj = Holder()
    obj.model = xgb.XGBRegressor(random_state=np.random.Generator(np.random.Philox(0)))
    with pytest.raises(SerializationError, match=r"random_state.*Philox.*pass an int seed"):
        save_object(obj, io.BytesIO())


@pytest.mark.parametrize("edit", [
    lambda s: s["state"].update(pos=10**6),
    lambda s: s["state"].update(key={"~": "ndarray", "dtype": "<u4", "shape": [3],
                                     "b64": "AAAAAAAAAAAAAAAA"}),
    lambda s: s.update(bit_generator="SFC64"),
    lambda s: s.update(has_gauss=7),
], ids=["position-past-the-key", "short-key", "other-bit-generator", "bad-flag"])
def test_a_crafted_generator_state_is_a_format_error(edit: Any) -> None:
    """numpy's MT19937 trusts its position: 10**6 crashed the process at the first draw."""
    from dryml.errors import FormatError

    obj = Holder()
    obj.model = xgb.XGBClassifier(n_estimators=3, random_state=np.random.RandomState(0))
    buf = io.BytesIO()
    save_object(obj, buf)

    def craft(manifest: dict[str, Any]) -> None:
        edit(manifest["objects"][0]["state"]["model"]["meta"]["params"]["random_state"]["state"])

    with pytest.raises(FormatError, match="random generator state in the file is not one "
                                          "numpy writes"):
        load_object(io.BytesIO(rewrite_manifest(buf.getvalue(), craft)))
