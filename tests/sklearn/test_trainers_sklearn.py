"""dryml-sklearn Trainables: the trainer conformance suite, Pipelines of Estimators, seeds.

Training called from the test process runs in a real ``sklearn`` compute context (a worker
process) and the trained state comes back, as it does for users.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dryml import ObjectDef, load_object, metrics, save_object
from dryml.errors import ConfigurationError, UntrustedClassError
from dryml.models import Pipe, Trainable, TrainSpec
from dryml.repo import Selector
from dryml.testing.trainers import (
    TrainerCase,
    TrainerConformance,
    classification_data,
    regression_data,
)

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("sklearn")
    pytest.importorskip("skops")

from sklearn.base import BaseEstimator  # noqa: E402

from dryml_sklearn.models import Estimator, SklearnTrainable  # noqa: E402

LOGREG = "sklearn.linear_model.LogisticRegression"


def scaled_logreg() -> Estimator:
    return Estimator("sklearn.pipeline.Pipeline", steps=[
        ("scale", Estimator("sklearn.preprocessing.StandardScaler")),
        ("clf", Estimator(LOGREG, C=0.5, max_iter=500))])


def build_pipeline_classifier() -> SklearnTrainable:
    return SklearnTrainable(scaled_logreg(), task="classifier")


def build_forest_classifier() -> SklearnTrainable:
    return SklearnTrainable(
        Estimator("sklearn.ensemble.RandomForestClassifier", n_estimators=20),
        spec=TrainSpec(seed=3))


def build_ridge_regressor() -> SklearnTrainable:
    return SklearnTrainable(Estimator("sklearn.linear_model:Ridge", alpha=0.1), "regressor")


class TestSklearnTrainers(TrainerConformance):
    cases: ClassVar[list[TrainerCase]] = [
        TrainerCase("pipeline", build_pipeline_classifier, "classifier", min_score=0.95,
                    component=Selector(Estimator, args=("sklearn.pipeline.Pipeline",))),
        TrainerCase("forest", build_forest_classifier, "classifier", min_score=0.95,
                    component=Selector(TrainSpec, kwargs={"seed": 3})),
        TrainerCase("ridge", build_ridge_regressor, "regressor", min_score=0.95,
                    component=Selector(Estimator, kwargs={"alpha": 0.1})),
    ]


def _arrays(data: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = data.peek()
    return np.asarray(x), np.asarray(y)


def test_pipeline_of_estimators_equals_the_same_scikit_learn_pipeline() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    model = build_pipeline_classifier()
    model.train(classification_data())
    assert isinstance(model.model, Pipeline)
    assert list(model.model.named_steps) == ["scale", "clf"]
    x, y = _arrays(classification_data())
    np.testing.assert_allclose(model.model.named_steps["scale"].mean_, x.mean(axis=0),
                               rtol=1e-5)
    plain = Pipeline([("scale", StandardScaler()),
                      ("clf", LogisticRegression(C=0.5, max_iter=500))]).fit(x, y)
    test_x, _ = _arrays(classification_data(seed=1))
    probs = np.asarray(model.eval(classification_data(seed=1)).peek()[0])
    assert probs.shape == (600, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)  # float32 in, float32 out
    np.testing.assert_array_equal(probs, plain.predict_proba(test_x))


def test_same_seed_same_predictions_other_seed_differs() -> None:
    def forest(seed: int) -> SklearnTrainable:
        return SklearnTrainable(Estimator("sklearn.ensemble.ExtraTreesRegressor",
                                          n_estimators=10, max_features=0.5),
                                "regressor", spec=TrainSpec(seed=seed))

    test = regression_data(seed=1)
    preds = []
    for seed in (7, 7, 8):
        model = forest(seed)
        model.train(regression_data())
        assert model.model.random_state == seed
        preds.append(np.asarray(model.eval(test).peek()[0]))
    np.testing.assert_array_equal(preds[0], preds[1])
    assert not np.array_equal(preds[0], preds[2])


def test_seed_reaches_nested_estimators_but_not_ones_given_a_random_state() -> None:
    bag = Estimator("sklearn.ensemble.BaggingClassifier", n_estimators=3,
                    estimator=Estimator("sklearn.tree.DecisionTreeClassifier"))
    built = bag.build(seed=5)
    assert built.random_state == 5 and built.estimator.random_state == 5
    fixed = Estimator("sklearn.tree.DecisionTreeClassifier", random_state=1).build(seed=5)
    assert fixed.random_state == 1


def test_validation_split_holds_out_data_and_records_scores() -> None:
    model = SklearnTrainable(scaled_logreg(), spec=TrainSpec(validation_split=0.25, seed=2))
    model.train(classification_data())
    assert model.train_state.progress["examples"] == 450
    (scores,) = model.train_state.history
    assert scores["val_accuracy"] > 0.9 and 0 < scores["val_loss"] < 1


def test_classifier_without_probabilities_is_refused_with_the_fix() -> None:
    model = SklearnTrainable(Estimator("sklearn.svm.LinearSVC"))
    with pytest.raises(ConfigurationError, match="predict_proba"):
        model.train(classification_data(n=60))
    assert not model.trained


def test_a_model_that_is_no_classifier_is_refused_as_one() -> None:
    """A mixture model has predict_proba, of its clusters: they were scored as the classes
    (accuracy 0.0 on iris)."""
    model = SklearnTrainable(Estimator("sklearn.mixture.GaussianMixture", n_components=3))
    with pytest.raises(ConfigurationError, match="is a density_estimator, not a classifier.*"
                                                 "task='regressor'"):
        model.train(classification_data(n=60))


class OldStyleClassifier(BaseEstimator):
    """A classifier of the older convention: no ClassifierMixin, ``_estimator_type`` only, and
    no ``classes_``."""

    _estimator_type = "classifier"

    def __init__(self, bias: float = 0.0) -> None:
        self.bias = bias

    def fit(self, x: Any, y: Any) -> OldStyleClassifier:
        self.k_ = int(np.max(y)) + 1
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        return np.full((len(x), self.k_), 1.0 / self.k_)


def test_a_classifier_of_the_older_convention_trains_and_is_scored() -> None:
    model = SklearnTrainable(Estimator(f"{__name__}.OldStyleClassifier"),
                             spec=TrainSpec(validation_split=0.25, seed=2))
    model.fit(classification_data(), None)
    (scores,) = model.train_state.history
    assert scores["val_loss"] == pytest.approx(np.log(3))


def _rare_class(kind: str, spec: TrainSpec) -> Any:
    """Labels 0..3 whose rare class 3 the validation split of ``spec`` leaves out, as
    ``kind``."""
    from dryml.data import NumpyDataset
    from dryml.models import split_validation

    x, y = _arrays(classification_data())
    rows = np.arange(len(y))
    _, (held, _) = split_validation(rows, rows, spec.validation_split, spec.split_seed)
    y = y.copy()
    y[np.setdiff1d(rows, held)[:8]] = 3
    given = {"int": y, "str": np.array(list("abcd"))[y], "float": y.astype(np.float64),
             "negative": y - 1}[kind]
    return NumpyDataset((x, given), supervised=True)


def test_labels_of_several_columns_are_refused_before_fitting() -> None:
    """One-hot rows (what a Keras model of the same Dataset takes) made scikit-learn fit a
    multi-output model whose predict_proba is a list: eval failed with a bare AttributeError
    ('list' object has no attribute 'shape') after the fit."""
    from dryml.data import NumpyDataset

    data = classification_data(n=60)
    x, y = (np.asarray(a) for a in data.peek())
    one_hot = NumpyDataset((x, np.eye(3)[y.astype(int) % 3]), supervised=True)
    model = SklearnTrainable(Estimator("sklearn.ensemble.RandomForestClassifier",
                                       n_estimators=3), task="classifier")
    with pytest.raises(ConfigurationError, match=r"y has 3 columns, .*\(one-hot rows: "
                                                 r"data.apply_y\(lambda y: np.argmax"):
        model.fit(one_hot, None)
    labels = one_hot.apply_y(lambda row: np.argmax(row, axis=-1))
    model.fit(labels, None)
    assert np.asarray(model.predict(x)).shape == (60, 3)


@pytest.mark.parametrize("kind", ["str", "float", "negative"])
def test_validation_scores_of_labels_that_keep_sklearns_order(kind: str) -> None:
    """The validation rows lacked the rare class, and scoring them (strings, floats or
    negative labels) raised after the fit: the trained model was lost."""
    spec = TrainSpec(validation_split=0.25, seed=2)
    reference = SklearnTrainable(scaled_logreg(), spec=spec)
    reference.fit(_rare_class("int", spec), None)
    model = SklearnTrainable(scaled_logreg(), spec=spec)
    model.fit(_rare_class(kind, spec), None)
    assert model.train_state.history == reference.train_state.history != []


def test_a_validation_label_the_training_rows_lack_leaves_no_scores_and_keeps_the_model() -> None:
    from dryml.data import NumpyDataset
    from dryml.errors import DrymlWarning

    x, y = _arrays(classification_data())
    model = SklearnTrainable(scaled_logreg())
    valid = NumpyDataset((x[:20], np.full(20, 7)), supervised=True)
    with pytest.warns(DrymlWarning, match="was trained, but its validation data cannot be "
                                          "scored: the target label 7 is not among labels"):
        model.fit(NumpyDataset((x, y), supervised=True), valid)
    assert model.train_state.history == []
    assert model.predict(x[:3]).shape == (3, 3)


def test_estimator_classes_must_come_from_trusted_or_imported_modules() -> None:
    with pytest.raises(UntrustedClassError, match="not trusted"):
        Estimator("some_unknown_module.Model").build()
    with pytest.raises(ConfigurationError, match="not a scikit-learn estimator"):
        Estimator("sklearn.preprocessing.scale").build()
    with pytest.raises(ConfigurationError, match="cannot be found"):
        Estimator("sklearn.linear_model.NoSuchModel").build()
    with pytest.raises(ConfigurationError, match="dotted path"):
        Estimator("LogisticRegression").build()
    with pytest.raises(ConfigurationError, match="regressor"):
        SklearnTrainable(scaled_logreg(), task="clustering")


class NearestMean(Trainable):
    """A numpy classifier (framework "default": runs in this process): nearest class mean."""

    def __init__(self) -> None:
        self.centers: np.ndarray | None = None

    def fit(self, data: Any, valid: Any) -> None:
        x, y = (np.concatenate(part) for part in zip(*data.numpy().batch(100), strict=True))
        self.centers = np.stack([x[y == c].mean(axis=0) for c in np.unique(y)])

    def predict(self, x: Any) -> Any:
        assert self.centers is not None
        d = -((np.asarray(x)[:, None, :] - self.centers[None]) ** 2).sum(-1)
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def save_object_imp(self, store: Any) -> None:
        if self.centers is not None:
            store.put("centers", self.centers)

    def load_object_imp(self, store: Any) -> None:
        self.centers = store.get("centers", None)


def test_transformer_step_feeds_the_next_step_of_a_pipe_across_frameworks() -> None:
    scaler = SklearnTrainable(Estimator("sklearn.preprocessing.StandardScaler"),
                              task="transformer", spec=TrainSpec(validation_split=0.2))
    pipe = Pipe(scaler, NearestMean())
    pipe.train(classification_data())
    assert scaler.trained and pipe.trained and pipe.task == "classifier"
    assert scaler.model.n_samples_seen_ == 600  # a transformer fits on all the data
    x, _ = _arrays(classification_data())
    scaled = np.asarray(scaler.eval(classification_data()).peek()[0])
    np.testing.assert_allclose(scaled.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_array_equal(scaled, scaler.model.transform(x))
    assert metrics.accuracy(pipe, classification_data(seed=1)) > 0.95
    loaded = load_object(io.BytesIO(_saved(pipe)))
    np.testing.assert_array_equal(loaded.eval(classification_data(seed=1)).peek()[0],
                                  pipe.eval(classification_data(seed=1)).peek()[0])
    with pytest.raises(ConfigurationError, match="no transform"):
        SklearnTrainable(Estimator("sklearn.linear_model.Ridge"),
                         task="transformer").train(regression_data(n=50))


def _saved(obj: Any) -> bytes:
    buf = io.BytesIO()
    save_object(obj, buf)
    return buf.getvalue()


def test_definitions_are_json_and_build_without_importing_scikit_learn() -> None:
    code = (
        "import json, sys\n"
        "from dryml import ObjectDef\n"
        "from dryml_sklearn.models import Estimator, SklearnTrainable\n"
        "from dryml.models import TrainSpec\n"
        "m = SklearnTrainable(Estimator('sklearn.pipeline.Pipeline', steps=[('s', "
        "Estimator('sklearn.preprocessing.StandardScaler'))]), spec=TrainSpec(seed=1))\n"
        "d = ObjectDef.from_dict(json.loads(json.dumps(m.definition().to_dict())))\n"
        "assert d.build().estimator.params['steps'][0][1].cls.endswith('StandardScaler')\n"
        "assert 'sklearn' not in sys.modules, 'sklearn imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    rebuilt = ObjectDef.from_dict(build_pipeline_classifier().definition().to_dict()).build()
    assert isinstance(rebuilt.estimator.params["steps"][1][1], Estimator)


def test_trainer_records_name_the_public_classes() -> None:
    from dryml import Object
    from dryml.plugins import get_plugin_manager
    from dryml.records import load_ref

    records = {r.name: r for p, r in get_plugin_manager().records("dryml_trainers")
               if p == "sklearn"}
    assert set(records) == {"sklearn.estimator", "sklearn.trainable"}
    assert load_ref(records["sklearn.estimator"].impl) is Estimator
    assert load_ref(records["sklearn.trainable"].impl) is SklearnTrainable
    assert all(r.framework == "sklearn" and issubclass(load_ref(r.impl), Object)
               for r in records.values())


_names = st.from_regex(r"[a-z][a-z_0-9]{0,8}", fullmatch=True)
_leaves = (st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=8)
           | st.floats(allow_nan=False))
_params = st.dictionaries(_names, st.recursive(
    _leaves,
    lambda inner: (st.lists(inner, max_size=3) | st.tuples(_names, inner)
                   | st.dictionaries(_names, inner, max_size=3)
                   | st.builds(lambda kw: Estimator("sklearn.tree.DecisionTreeClassifier",
                                                    **kw),
                               st.dictionaries(_names, inner, max_size=2))),
    max_leaves=8), max_size=4)


@settings(max_examples=60)
@given(_params)
def test_estimator_definitions_survive_json_whatever_the_nesting(params: dict[str, Any]
                                                                ) -> None:
    model = SklearnTrainable(Estimator("sklearn.pipeline.Pipeline", **params))
    data = json.loads(json.dumps(model.definition().to_dict()))
    rebuilt = ObjectDef.from_dict(data).build()
    assert rebuilt.definition() == model.definition()
    assert Selector(SklearnTrainable, args=(Selector(Estimator, kwargs=params),))(rebuilt)


def test_a_search_over_a_pipe_of_sklearn_steps_trains_every_trial(tmp_path: Any) -> None:
    """Found by review: a Pipe is a 'default' Trainable, so its trials ran in a 'default'
    worker where the scikit-learn steps refused to train: every trial failed."""
    from dryml.data import NumpyDataset
    from dryml.repo import Repo
    from dryml.search import Float, Search

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = (x[:, 0] > 0).astype(int)
    train = NumpyDataset((x[:200], y[:200]), supervised=True)
    valid = NumpyDataset((x[200:], y[200:]), supervised=True)
    space = ObjectDef(Pipe, ObjectDef(SklearnTrainable, ObjectDef(
        Estimator, "sklearn.preprocessing.StandardScaler"), task="transformer"),
        ObjectDef(SklearnTrainable, ObjectDef(
            Estimator, "sklearn.linear_model.LogisticRegression", C=Float(0.1, 10, log=True))))
    result = Search(space, metric="accuracy", repo=tmp_path / "repo", name="pipe",
                    n_trials=2, sampler="random", seed=0).run(train, valid)
    assert [t["status"] for t in result.trials] == ["complete", "complete"], result.trials
    assert {t["framework"] for t in result.trials} == {"sklearn"}  # not 'default'
    best = result.best
    assert isinstance(best, Pipe) and best.trained and result.best_value > 0.9
    assert metrics.accuracy(Repo(tmp_path / "repo").get_one(best.dry_id), valid) == \
        result.best_value


def test_a_pipes_context_reqs_reach_its_steps() -> None:
    """Found by review: Pipe.train and Pipe.eval took context_reqs and dropped them, so a
    step asked to run on a GPU trained on the CPU without a word."""
    from dryml.data import NumpyDataset
    from dryml.errors import ResourcesUnavailableError

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    data = NumpyDataset((x, (x[:, 0] > 0).astype(int)), supervised=True)

    def pipe() -> Pipe:
        return Pipe(SklearnTrainable(Estimator("sklearn.preprocessing.StandardScaler"),
                                     task="transformer"),
                    SklearnTrainable(Estimator("sklearn.linear_model.LogisticRegression")))

    with pytest.raises(ResourcesUnavailableError):
        pipe().train(data, context_reqs={"sklearn": {"num_cpus": 4096}})
    with pytest.raises(ConfigurationError, match="names 'tf', which no step of this Pipe uses"):
        pipe().train(data, context_reqs={"tf": {}})
    trained = pipe()
    trained.train(data, context_reqs={"sklearn": {"num_cpus": 1}})
    assert trained.trained and metrics.accuracy(trained, data) > 0.9
    with pytest.raises(ResourcesUnavailableError):
        trained.eval(data, context_reqs={"sklearn": {"num_cpus": 4096}})


@pytest.mark.parametrize("value", [5, {"predict_proba": 1},
                                   {"__dry__": "class",
                                    "path": "sklearn.linear_model:LogisticRegression"}],
                         ids=["int", "dict", "class"])
def test_a_plain_value_in_place_of_the_fitted_model_is_a_format_error(value: Any) -> None:
    """A file could hold a plain value where the fitted estimator is kept: it loaded, and the
    first predict failed with a raw AttributeError or TypeError (found by the load-paths
    audit)."""
    from dryml.errors import FormatError
    from dryml.testing.serializers import rewrite_manifest

    model = build_forest_classifier()
    try:
        model.train(classification_data())
    finally:
        from dryml.context import shutdown_workers

        shutdown_workers()
    buffer = io.BytesIO()
    save_object(model, buffer)

    def edit(manifest: dict[str, Any]) -> None:
        manifest["objects"][-1]["state"]["model"] = {"value": value}
        manifest["members"] = {}

    loaded = load_object(io.BytesIO(rewrite_manifest(buffer.getvalue(), edit)))
    with pytest.raises(FormatError, match="stored 'model' of this SklearnTrainable is a .*, not "
                                          "a fitted scikit-learn estimator"):
        _ = loaded.model


def test_a_sparse_matrix_is_said_to_need_toarray() -> None:
    """A scipy sparse x (as scikit-learn's vectorizers give) was "a scalar" with no hint
    (found by the dataset audit)."""
    from scipy import sparse

    from dryml.data import NumpyDataset
    from dryml.errors import DatasetError

    with pytest.raises(DatasetError, match=r"It is a sparse matrix: pass x.toarray\(\)"):
        NumpyDataset((sparse.csr_matrix(np.eye(3)), np.arange(3)), supervised=True)


def test_a_transformer_with_sparse_output_gives_dense_rows() -> None:
    """OneHotEncoder's sparse output failed in numpy ("zero-dimensional arrays cannot be
    concatenated"), after fitting (found by the resume and Pipe audit)."""
    from dryml.data import NumpyDataset
    from dryml_sklearn.models import Estimator, SklearnTrainable

    x = np.array([[0], [1], [2], [1]])
    encoder = SklearnTrainable(Estimator("sklearn.preprocessing.OneHotEncoder"),
                               task="transformer")
    encoder.train(NumpyDataset((x, np.zeros(4)), supervised=True))
    out = np.asarray(encoder.eval(NumpyDataset(x)).peek())
    np.testing.assert_array_equal(out, np.eye(3)[[0, 1, 2, 1]])
