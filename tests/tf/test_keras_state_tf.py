"""Keras layer state beyond weights (issue 11): finalized layers, assets, bounds on assets.

Files are real ``.dry`` files; hostile ones are real files whose manifest was rewritten with a
valid checksum, so the edit reaches the asset checks behind the checksum. The fresh-process
loads of the same layers are in test_zoo_tf.py.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dryml import load_object, save_object
from dryml.errors import FormatError, SerializationError
from dryml.format import read_manifest
from dryml.testing.serializers import rewrite_manifest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("tensorflow")

import keras_zoo  # noqa: E402 - tests/tf is on sys.path (pytest's prepend import mode)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _holder(model: Any) -> keras_zoo.Holder:
    holder = keras_zoo.Holder()
    holder.model = model
    return holder


def _round_trip(model: Any) -> Any:
    buf = io.BytesIO()
    save_object(_holder(model), buf)
    buf.seek(0)
    return load_object(buf).model


def _same(model: Any, loaded: Any, kind: str) -> None:
    want, got = keras_zoo.run(model, kind), keras_zoo.run(loaded, kind)
    assert want.dtype == got.dtype and want.shape == got.shape
    assert want.tobytes() == got.tobytes(), f"max difference {np.max(np.abs(want - got))}"


def test_an_adapted_normalization_predicts_identically_alone_and_in_nested_models() -> None:
    cases = keras_zoo.cases()
    for name in ("Normalization", "Normalization-nested-models"):
        build, kind = cases[name]
        model = build()
        _same(model, _round_trip(model), kind)


@pytest.mark.parametrize("layer", ["StringLookup", "IntegerLookup", "TextVectorization"])
def test_an_adapted_vocabulary_layer_round_trips_in_int_and_tf_idf_modes(layer: str) -> None:
    cases = keras_zoo.cases()
    for mode in ("int", "tf_idf"):
        build, kind = cases[f"{layer}-{mode}"]
        model = build()
        _same(model, _round_trip(model), kind)


def test_a_vocabulary_layer_never_adapted_loads_never_adapted_and_adapts_alike() -> None:
    # found by audit: it saved, and the load was a FormatError (Keras' own load fails too)
    import keras

    data = np.array([["a"], ["b"], ["a"], ["c"]])
    layers = [keras.layers.StringLookup(), keras.layers.StringLookup(mask_token="",
                                                                     num_oov_indices=2),
              keras.layers.IntegerLookup(), keras.layers.TextVectorization()]
    inputs = [keras.Input((1,), dtype="string"), keras.Input((1,), dtype="string"),
              keras.Input((1,), dtype="int64"), keras.Input((1,), dtype="string")]
    model = keras.Model(inputs, [layer(x) for layer, x in zip(layers, inputs, strict=True)])
    loaded = _round_trip(model)
    again = [layer for layer in loaded.layers if not isinstance(layer, keras.layers.InputLayer)]
    for old, new in zip(layers, again, strict=True):
        assert new.get_vocabulary() == old.get_vocabulary()  # special tokens only
        sample = np.array([[1], [2], [1], [3]]) if "Integer" in type(old).__name__ else data
        old.adapt(sample)
        new.adapt(sample)
        assert np.array_equal(new(sample), old(sample))


def _saved_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path]:
    """A StringLookup model saved with its vocabulary as Keras' asset file, as dryml-tf wrote
    it before vocabularies were stored apart (the asset checks hold for any layer's asset
    files)."""
    from dryml_tf import _keras_state

    build, _ = keras_zoo.cases()["StringLookup-int"]
    model = build()
    path = tmp_path / "lookup.dry"
    with monkeypatch.context() as patch:
        patch.setattr(_keras_state, "_lookup_layers", lambda model: [])
        save_object(_holder(model), path)
    return model, path


def _model_meta(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["objects"][0]["state"]["model"]["meta"]  # type: ignore[no-any-return]


def test_the_vocabulary_is_a_json_member_of_the_file(tmp_path: Path) -> None:
    from dryml._io import open_container

    build, _ = keras_zoo.cases()["StringLookup-int"]
    model = build()
    path = tmp_path / "lookup.dry"
    save_object(_holder(model), path)
    meta = read_manifest(path).objects[0].state["model"]["meta"]
    assert meta["assets"] == []
    [entry] = meta["vocabularies"]
    with open_container(path, None) as (reader, _):
        tokens = json.loads(reader.read_bytes(entry["member"]))
    assert tokens == model.layers[0].get_vocabulary(include_special_tokens=True)


def test_a_file_with_the_vocabulary_as_an_asset_file_loads_identically(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, path = _saved_lookup(tmp_path, monkeypatch)
    assets = read_manifest(path).objects[0].state["model"]["meta"]["assets"]
    assert [a["path"] for a in assets] == ["layers/string_lookup/vocabulary.txt"]
    _same(model, load_object(path).model, "str")


def _lookup(layer: str, tokens: list[str], **kwargs: Any) -> Any:
    import keras

    lookup = getattr(keras.layers, layer)(**kwargs)
    lookup.adapt(np.array(tokens, dtype=object))
    return keras.Sequential([keras.Input((1,), dtype="string"), lookup])


@pytest.mark.parametrize(("layer", "tokens", "kwargs"), [
    ("StringLookup", ["red", "red", "blue", "blue", ""], {}),
    ("StringLookup", ["a\nb", "a", "b", "c", "c"], {}),
    ("StringLookup", ["a\rb", "\r", "c", "c"], {"output_mode": "tf_idf"}),
    ("TextVectorization", ["x\u2028y", "z", "z", "x"], {"split": None, "standardize": None}),
])
def test_a_vocabulary_with_an_empty_token_or_a_line_break_maps_every_token_identically(
        layer: str, tokens: list[str], kwargs: dict[str, Any]) -> None:
    """Keras writes a vocabulary as lines of text and splits them again: '' was lost and a
    token holding a line break came back as two tokens, so ids changed without a word."""
    model = _lookup(layer, tokens, **kwargs)
    loaded = _round_trip(model)
    want = model.layers[0].get_vocabulary(include_special_tokens=True)
    assert loaded.layers[0].get_vocabulary(include_special_tokens=True) == want
    inputs = np.array([[t] for t in dict.fromkeys(tokens)] + [["unseen"]], dtype=object)
    assert np.asarray(model(inputs)).tobytes() == np.asarray(loaded(inputs)).tobytes()


def test_a_vocabulary_entry_for_another_layer_class_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "lookup.dry"
    save_object(_holder(_lookup("StringLookup", ["a", "b"])), path)

    def edit(manifest: dict[str, Any]) -> None:
        _model_meta(manifest)["vocabularies"][0]["class"] = "IntegerLookup"

    with pytest.raises(FormatError, match="vocabulary entry must name its member and the "
                                          "layer's class \\(StringLookup\\)"):
        load_object(io.BytesIO(rewrite_manifest(path.read_bytes(), edit)))


def test_dropout_state_is_kept_so_training_goes_on_as_it_would_have() -> None:
    """Keras does not save seed generators: a loaded model's dropout masks (training=True,
    Monte Carlo dropout, further training) differed from the original's."""
    import keras

    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
                              keras.layers.Dropout(0.5, seed=7), keras.layers.Dropout(0.3),
                              keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, x[:, :1], epochs=2, batch_size=8, verbose=0, shuffle=False)
    loaded = _round_trip(model)
    assert (np.asarray(model(x, training=True)).tobytes()
            == np.asarray(loaded(x, training=True)).tobytes())
    for m in (model, loaded):
        m.fit(x, x[:, :1], epochs=1, batch_size=8, verbose=0, shuffle=False)
    assert np.asarray(model(x)).tobytes() == np.asarray(loaded(x)).tobytes()


@pytest.mark.parametrize("bad", ["../escaped.txt", "/tmp/escaped.txt", "a/../../escaped.txt",
                                 "layers\\x.txt", "", "a//b.txt"])
def test_an_asset_path_outside_the_asset_folder_is_a_format_error(
        tmp_path: Path, bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _, path = _saved_lookup(tmp_path, monkeypatch)

    def edit(manifest: dict[str, Any]) -> None:
        _model_meta(manifest)["assets"][0]["path"] = bad

    hostile = rewrite_manifest(path.read_bytes(), edit)
    with pytest.raises(FormatError, match="invalid Keras asset path"):
        load_object(io.BytesIO(hostile))
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_an_asset_listed_twice_is_a_format_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, path = _saved_lookup(tmp_path, monkeypatch)

    def edit(manifest: dict[str, Any]) -> None:
        assets = _model_meta(manifest)["assets"]
        assets.append(dict(assets[0]))

    # the copy names the same member: the reader's budget (each member read once) may
    # refuse it before the asset check does; either is a FormatError naming the fault
    with pytest.raises(FormatError, match="listed twice|read more often than the file"):
        load_object(io.BytesIO(rewrite_manifest(path.read_bytes(), edit)))


def test_assets_beyond_the_bounds_are_refused_on_save_and_on_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dryml_tf import _keras_state

    model, path = _saved_lookup(tmp_path, monkeypatch)
    monkeypatch.setattr(_keras_state, "_lookup_layers", lambda model: [])
    monkeypatch.setattr(_keras_state, "MAX_ASSET_BYTES", 8)
    with pytest.raises(FormatError, match="exceed 8 bytes"):
        load_object(path)
    with pytest.raises(SerializationError, match="MAX_ASSET_BYTES"):
        save_object(_holder(model), tmp_path / "again.dry")
    monkeypatch.setattr(_keras_state, "MAX_ASSET_BYTES", 2**20)
    monkeypatch.setattr(_keras_state, "MAX_ASSET_FILES", 0)
    with pytest.raises(FormatError, match="at most 0 files"):
        load_object(path)


def test_state_for_a_layer_the_model_lacks_is_a_format_error(tmp_path: Path) -> None:
    build, _ = keras_zoo.cases()["Normalization-nested-models"]
    path = tmp_path / "n.dry"
    save_object(_holder(build()), path)

    def edit(manifest: dict[str, Any]) -> None:
        state = _model_meta(manifest)["state"]
        state.append({**state[0], "path": "layers/not_there"})

    with pytest.raises(FormatError, match="not_there"):
        load_object(io.BytesIO(rewrite_manifest(path.read_bytes(), edit)))


def test_a_file_in_the_first_layout_loads_finalized(tmp_path: Path) -> None:
    # dryml-tf 0.1.0 wrote model.weights in order under "weights" (no state walk, no assets)
    build, kind = keras_zoo.cases()["Normalization"]
    model = build()
    path = tmp_path / "old.dry"
    save_object(_holder(model), path)

    def edit(manifest: dict[str, Any]) -> None:
        meta = _model_meta(manifest)
        meta["weights"] = [v for entry in meta.pop("state") for v in entry["vars"].values()]
        del meta["assets"], meta["optimizer_built"]

    old = rewrite_manifest(path.read_bytes(), edit)
    _same(model, load_object(io.BytesIO(old)).model, kind)


MIXED = '''
import json, os, sys, warnings
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
warnings.filterwarnings("ignore")
import keras
import numpy as np
from dryml import Object, load_object, save_object


class Box(Object):
    def __init__(self):
        self.model = None

    def save_object_imp(self, store):
        store.put("model", self.model)

    def load_object_imp(self, store):
        self.model = store.get("model")


x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
path, mode = sys.argv[1], sys.argv[2]


def step(model):  # one more epoch from where the model is
    model.fit(x, x[:, :1], epochs=1, batch_size=8, verbose=0, shuffle=False)
    return model.predict(x, verbose=0)


if mode == "save":
    keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4),
                              keras.layers.Dense(1, dtype="float32")])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, x[:, :1], epochs=2, batch_size=8, verbose=0, shuffle=False)
    box = Box()
    box.model = model
    save_object(box, path)
    np.save(path + ".pred.npy", model.predict(x, verbose=0))
    np.save(path + ".next.npy", step(model))
else:  # a fresh process: the default float32 policy
    model = load_object(path).model
    print("RESULT" + json.dumps({
        "optimizer": type(model.optimizer).__name__,
        "same": bool(np.array_equal(np.load(path + ".pred.npy"), model.predict(x, verbose=0))),
        "next": float(np.abs(np.load(path + ".next.npy") - step(model)).max())}))
'''


def test_a_mixed_precision_model_loads_and_trains_on_in_a_fresh_process(tmp_path: Path) -> None:
    """Under mixed_float16, compile wraps the optimizer in a LossScaleOptimizer; a process
    with the default policy rebuilt a plain one, and the load failed on the inner optimizer's
    state ("the file holds Keras state for ['optimizer/inner_optimizer']...")."""
    import subprocess
    import sys

    script = tmp_path / "mixed.py"
    script.write_text(MIXED)
    path = str(tmp_path / "mixed.dry")
    for mode in ("save", "load"):
        out = subprocess.run([sys.executable, str(script), path, mode], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT")[-1])
    assert result == {"optimizer": "LossScaleOptimizer", "same": True, "next": 0.0}


@pytest.mark.parametrize(("layer", "given", "replaced", "inputs"), [
    ("StringLookup", ["a", "b", "c"], ["x", "y", "z", "w"], [["x"], ["w"], ["a"]]),
    ("IntegerLookup", [1, 2, 3], [7, 8, 9, 10], [[7], [10], [1]]),
])
def test_a_vocabulary_replaced_after_the_constructor_comes_back_replaced(
        layer: str, given: list[Any], replaced: list[Any], inputs: list[Any]) -> None:
    """set_vocabulary() after vocabulary=... came back with the constructor's vocabulary (Keras
    never updates the config): ids 1 4 0 became 0 0 1, silently."""
    import keras

    lookup = getattr(keras.layers, layer)(vocabulary=given)
    lookup.set_vocabulary(replaced)
    dtype = "string" if layer == "StringLookup" else "int64"
    model = keras.Sequential([keras.Input((1,), dtype=dtype), lookup])
    loaded = _round_trip(model)
    x = np.array(inputs, dtype=object if dtype == "string" else np.int64)
    assert np.asarray(loaded(x)).tolist() == np.asarray(model(x)).tolist()
    assert loaded.layers[0].get_vocabulary() == model.layers[0].get_vocabulary()


def test_a_file_that_stored_only_adapted_vocabularies_still_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written before every vocabulary was stored hold those of adapted layers only."""
    import keras

    from dryml_tf import _keras_state

    adapted = keras.layers.StringLookup()
    adapted.adapt(np.array(["p", "q", "q"], dtype=object))
    given = keras.layers.StringLookup(vocabulary=["a", "b"])
    inputs = keras.Input((1,), dtype="string")
    model = keras.Model(inputs, keras.layers.Concatenate()([adapted(inputs), given(inputs)]))
    original = _keras_state._lookup_layers
    path = tmp_path / "older.dry"
    with monkeypatch.context() as patch:
        patch.setattr(_keras_state, "_lookup_layers",
                      lambda model, every=True: original(model, every=False))
        save_object(_holder(model), path)
    assert len(_model_meta_of(path)["vocabularies"]) == 1
    x = np.array([["q"], ["b"], ["zz"]], dtype=object)
    assert np.asarray(load_object(path).model(x)).tolist() == np.asarray(model(x)).tolist()


def _model_meta_of(path: Path) -> dict[str, Any]:
    return read_manifest(path).objects[0].state["model"]["meta"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["int", "tf_idf"])
def test_a_latin1_vocabulary_keeps_every_tokens_id(mode: str) -> None:
    """get_vocabulary() decodes a latin-1 layer's tokens and set_vocabulary() encoded them as
    UTF-8: "été" fell out of the vocabulary after a load (ids 1 3 1 2 became 0 3 0 2)."""
    import keras

    x = np.array([["\u00e9t\u00e9".encode("latin-1")], [b"abc"], ["\u00e9t\u00e9".encode(
        "latin-1")], [b"x"], [b""]], dtype=object)
    lookup = keras.layers.StringLookup(encoding="latin-1", output_mode=mode, mask_token="")
    lookup.adapt(x)
    model = keras.Sequential([keras.Input((1,), dtype="string"), lookup])
    loaded = _round_trip(model)
    assert np.asarray(loaded(x)).tobytes() == np.asarray(model(x)).tobytes()
