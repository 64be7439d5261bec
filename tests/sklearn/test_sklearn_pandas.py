"""pandas values inside scikit-learn estimators: column labels given as an Index save and load;
pandas.NA, which no file can rebuild, is refused at save with what to do instead.

Files are real ``.dry`` files written with ``save_object`` and read with ``load_object``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dryml import load_object, save_object
from dryml.errors import SerializationError, UntrustedClassError

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("sklearn")
    pytest.importorskip("skops")
pd = pytest.importorskip("pandas")  # not a dependency of dryml-sklearn

from sklearn.compose import make_column_transformer  # noqa: E402 - after the skip
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from sklearn_zoo import Holder  # noqa: E402

RNG = np.random.default_rng(0)
DF = pd.DataFrame({"a": RNG.normal(size=80), "b": RNG.normal(size=80),
                   "c": RNG.choice(["x", "y", "z"], 80)})
Y = (DF.a + (DF.c == "x") > 0).astype(int)


def _save(model: Any, path: Path) -> Path:
    holder = Holder()
    holder.model = model
    save_object(holder, path)
    return path


def test_column_transformer_columns_given_as_a_pandas_index_save_and_load(
        tmp_path: Path) -> None:
    numeric = DF.select_dtypes("number").columns
    other = DF.select_dtypes(exclude="number").columns
    columns = make_column_transformer((StandardScaler(), numeric),
                                      (OneHotEncoder(sparse_output=False), other))
    model = make_pipeline(columns.set_output(transform="pandas"), LogisticRegression()).fit(DF, Y)
    loaded = load_object(_save(model, tmp_path / "ct.dry")).model
    assert loaded.predict_proba(DF).tobytes() == model.predict_proba(DF).tobytes()
    assert loaded[0].transform(DF).equals(model[0].transform(DF))
    assert list(loaded[0].get_feature_names_out()) == list(model[0].get_feature_names_out())
    # the labels come back as a list, which column selection treats as it treats the Index
    assert [cols for _, _, cols in loaded[0].transformers] == [["a", "b"], ["c"]]
    assert loaded[0].transformers[0][2] is loaded[0].transformers_[0][2]


def test_an_index_of_labels_that_are_not_plain_values_is_refused_with_its_place(
        tmp_path: Path) -> None:
    model = make_column_transformer((StandardScaler(), ["a", "b"])).fit(DF)
    model.selected = pd.MultiIndex.from_tuples([("a", 1), ("b", 2)])
    with pytest.raises(SerializationError,
                       match=r"ColumnTransformer\.selected: a pandas MultiIndex.*list\(columns\)"):
        _save(model, tmp_path / "m.dry")


def _with_na() -> Any:
    data = DF[["c"]].astype(object).where(DF[["c"]] != "z", pd.NA)
    return make_pipeline(SimpleImputer(missing_values=pd.NA, strategy="most_frequent"),
                         OneHotEncoder()).fit(data)


def test_pandas_na_is_refused_at_save_naming_the_parameter_and_what_to_do(
        tmp_path: Path) -> None:
    with pytest.raises(SerializationError,
                       match=r"Pipeline\.steps\[0\]\[1\]\.missing_values: pandas\.NA.*np\.nan"):
        _save(_with_na(), tmp_path / "na.dry")
    assert not (tmp_path / "na.dry").exists()


def test_a_file_holding_pandas_na_says_that_no_trust_can_load_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dryml_sklearn import _skops_arrays

    with monkeypatch.context() as patch:  # as skops writes it (what the file holds)
        patch.setattr(_skops_arrays, "saving", lambda: False)
        path = _save(_with_na(), tmp_path / "na.dry")
    for trust in ([], ["pandas"], ["pandas.api.typing.NAType"]):
        with pytest.raises(UntrustedClassError, match=r"NAType.*no file can rebuild") as info:
            load_object(path, trust=trust)
        assert "trust=[" not in str(info.value)


def test_other_skops_users_keep_skops_behaviour_for_pandas_values(tmp_path: Path) -> None:
    import skops.io

    with pytest.raises(SerializationError):
        _save(_with_na(), tmp_path / "na.dry")  # dryml's getters are registered now
    assert skops.io.dumps(SimpleImputer(missing_values=pd.NA))
    with pytest.raises(TypeError):
        skops.io.dumps(make_column_transformer((StandardScaler(), DF.columns[:2])))
