"""dryml-tf: Keras 3 models and TensorFlow values in .dry files.

The shared conformance suite (dryml.testing.serializers) runs on one Object holding a trained
Sequential model (with optimizer state), a functional model, a registered subclassed model and
TensorFlow values as constructor arguments and stored values; only its fresh-process check
imports TensorFlow in a subprocess. The other tests run in this process and share one import.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dryml import Object, load_object, save_object
from dryml.errors import ClassNotFoundError, FormatError, UntrustedClassError
from dryml.format import Deferred, read_manifest
from dryml.testing.serializers import SerializerCase, SerializerConformance

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("tensorflow")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@functools.cache
def scaled_model_class() -> type:
    """A subclassed Keras model registered as serializable (defined on first use, so that
    importing this module does not import TensorFlow)."""
    import keras

    @keras.saving.register_keras_serializable(package="dryml_tests")
    class ScaledModel(keras.Model):
        def __init__(self, units: int = 4, scale: float = 2.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units, self.scale = units, scale
            self.hidden = keras.layers.Dense(units, activation="tanh")
            self.out = keras.layers.Dense(2)

        def call(self, x: Any) -> Any:
            return self.out(self.hidden(x)) * self.scale

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "units": self.units, "scale": self.scale}

    return ScaledModel


def make_data() -> tuple[np.ndarray, np.ndarray]:
    """Deterministic inputs and targets."""
    rng = np.random.default_rng(0)
    return (rng.normal(size=(48, 5)).astype("float32"),
            rng.normal(size=(48, 2)).astype("float32"))


class KerasModels(Object):
    """Three kinds of Keras model in the store, TensorFlow values as arguments."""

    dry_framework = "tf"

    def __init__(self, offset: Any, table: Any, dtype: Any, counter: Any) -> None:
        scaled_model_class()  # the module that defines the Keras classes is imported
        self.models: dict[str, Any] = {}
        self.values: dict[str, Any] = {}

    def save_object_imp(self, store: Any) -> None:
        for name, model in self.models.items():
            store.put(f"model.{name}", model)
        for name, value in self.values.items():
            store.put(f"value.{name}", value)

    def load_object_imp(self, store: Any) -> None:
        for key in store.names():
            kind, _, name = key.partition(".")
            (self.models if kind == "model" else self.values)[name] = store.get(key)


def build_models(train: bool = True) -> KerasModels:
    """Small trained models (Sequential with Adam state, functional, subclassed) and values."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    x, y = make_data()
    seq = keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="relu"),
                            keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    inp = keras.Input((5,))
    func = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(8)(inp)))
    sub = scaled_model_class()(units=3)
    sub(x[:1])
    for model in (seq, func, sub):
        model.compile(optimizer="adam", loss="mse")
        if train:
            model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    obj = KerasModels(tf.constant([1.5, -2.0]), tf.constant(np.arange(2000, dtype=np.int64)),
                      tf.bfloat16, tf.Variable([3, 4], trainable=False))
    obj.models = {"seq": seq, "func": func, "sub": sub}
    obj.values = {"half": tf.constant([[0.5, 1.25]], dtype=tf.bfloat16),
                  "words": tf.constant([b"a", b"\xff\x00"]),
                  "weights": tf.Variable(np.linspace(0, 1, 3000, dtype=np.float32))}
    return obj


def models_output(obj: KerasModels) -> dict[str, np.ndarray]:
    """Predictions of every model, the values, the arguments (bfloat16 as its bits)."""
    x, _ = make_data()
    out = {name: np.asarray(model(x, training=False)) for name, model in obj.models.items()}
    out["half"] = obj.values["half"].numpy().view(np.uint16)
    out["words"] = np.frombuffer(b"|".join(obj.values["words"].numpy()), dtype=np.uint8)
    out["weights"] = obj.values["weights"].numpy()
    offset, table, dtype, counter = obj.dry_args
    out["offset"], out["table"], out["counter"] = offset.numpy(), table.numpy(), counter.numpy()
    out["args"] = np.asarray([dtype.name == "bfloat16", counter.trainable is False])
    out["adam"] = np.concatenate([np.ravel(v.numpy()).astype(np.float64)
                                  for v in obj.models["seq"].optimizer.variables])
    return out


class TestTFConformance(SerializerConformance):
    """Round trip, fresh process, backend missing, corruption, inspect, version skew."""

    cases = (
        SerializerCase("keras", build=build_models, output=models_output, plugin="tf",
                       package="dryml-tf", frameworks=("tensorflow", "keras"),
                       framework_modules=("tensorflow", "keras")),
    )


def _save_load(obj: Object, **load: Any) -> Any:
    buf = io.BytesIO()
    save_object(obj, buf)
    buf.seek(0)
    return load_object(buf, **load)


def test_training_continues_identically_from_the_optimizer_state() -> None:
    x, y = make_data()
    obj = build_models()
    loaded = _save_load(obj)
    for name in ("seq", "sub"):
        a, b = obj.models[name], loaded.models[name]
        assert int(b.optimizer.iterations.numpy()) == int(a.optimizer.iterations.numpy()) > 0
        a.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
        b.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
        assert np.asarray(a(x)).tobytes() == np.asarray(b(x)).tobytes()


def test_file_layout_weights_are_npy_members_and_the_config_is_keras_json(
        tmp_path: Path) -> None:
    import json

    obj = build_models(train=False)
    save_object(obj, tmp_path / "m.dry")
    manifest = read_manifest(tmp_path / "m.dry")
    entry = manifest.objects[0].state["model.seq"]
    assert entry["serializer"] == "keras.model" and entry["meta"]["class"] == "Sequential"
    # Keras' own save walk: one entry per layer (or optimizer) that holds variables
    state = entry["meta"]["state"]
    assert [e["path"] for e in state] == [
        "layers/dense", "layers/batch_normalization", "layers/dense_1", "optimizer"]
    arrays = [v for e in state[:3] for v in e["vars"].values()]
    assert len(arrays) == len(obj.models["seq"].weights)
    assert all("member" in w["data"] for e in state for w in e["vars"].values())
    assert entry["meta"]["assets"] == []
    from dryml._io import open_container

    with open_container(tmp_path / "m.dry", None) as (reader, _):
        config = json.loads(reader.read_bytes(entry["meta"]["config"]))
    assert config["class_name"] == "Sequential" and "compile_config" in config
    assert set(manifest.frameworks) >= {"tensorflow", "keras"}


def _lambda_models() -> KerasModels:
    import keras

    obj = build_models(train=False)
    obj.models = {"lam": keras.Sequential([keras.Input((5,)), keras.layers.Dense(3),
                                           keras.layers.Lambda(lambda z: z * 2 + 1)])}
    return obj


def _no_safe_mode_advice(caught: list[warnings.WarningMessage]) -> None:
    texts = [str(w.message) for w in caught]
    assert not [t for t in texts if "safe_mode" in t], texts


def test_saving_a_lambda_layer_warns_that_loading_will_need_allow_code() -> None:
    from dryml.errors import DrymlWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_object(_lambda_models(), io.BytesIO())
    ours = [w for w in caught if issubclass(w.category, DrymlWarning)]
    assert len(ours) == 1 and "load_object(path, allow_code=True)" in str(ours[0].message)
    assert "Lambda 'lambda'" in str(ours[0].message)
    _no_safe_mode_advice(caught)


def test_a_lambda_layer_is_refused_by_default_with_dryml_advice() -> None:
    import keras

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_object(_lambda_models(), buf)
    from keras.src.backend.common import global_state

    before = global_state.get_global_attribute("safe_mode_saving")
    keras.config.enable_unsafe_deserialization()  # a process-wide switch must not matter
    try:
        buf.seek(0)
        with pytest.raises(UntrustedClassError) as info, \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_object(buf)
    finally:
        global_state.set_global_attribute("safe_mode_saving", before)
    assert ("the file contains Python code (a Keras Lambda layer), pass allow_code=True to "
            "load_object if you trust it") in str(info.value)
    assert "safe_mode" not in str(info.value) and "safe_mode" not in repr(info.value.__cause__)
    _no_safe_mode_advice(caught)


def test_allow_code_loads_a_lambda_layer_that_predicts_identically() -> None:
    obj = _lambda_models()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_object(obj, buf)
    buf.seek(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_object(buf, allow_code=True)
    x, _ = make_data()
    assert np.asarray(loaded.models["lam"](x)).tobytes() == \
        np.asarray(obj.models["lam"](x)).tobytes()
    _no_safe_mode_advice(caught)


def test_an_unregistered_custom_class_names_what_to_import() -> None:
    import keras

    obj = build_models(train=False)
    buf = io.BytesIO()
    save_object(obj, buf)
    registry = keras.saving.get_custom_objects()
    key = "dryml_tests>ScaledModel"
    cls = registry.pop(key)
    try:
        buf.seek(0)
        with pytest.raises(ClassNotFoundError, match="register_keras_serializable"):
            load_object(buf)
    finally:
        registry[key] = cls


def test_tensor_arguments_keep_dtype_shape_and_compare_structurally() -> None:
    import tensorflow as tf

    values = [tf.constant(v, dtype=d) for v, d in [
        ([[1, 2], [3, 4]], tf.int8), ([True, False], tf.bool), ([1 + 2j], tf.complex64),
        (np.zeros((0, 3)), tf.float16), ([0.1, 0.2], tf.bfloat16), ([b"x", b"yz"], tf.string),
        (7.0, tf.float64)]]
    for value in values:
        obj = KerasModels(value, value, tf.int32, tf.Variable(value))
        definition = obj.definition()
        assert definition == obj.definition()
        loaded = _save_load(obj)
        for got in (loaded.dry_args[0], loaded.dry_args[3]):
            assert got.dtype == value.dtype and got.shape == value.shape
            assert np.asarray(got.numpy()).tolist() == np.asarray(value.numpy()).tolist()
        rebuilt = definition.build()
        assert rebuilt.dry_args[0].dtype == value.dtype
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert KerasModels(values[0], values[0], tf.int32, tf.Variable(1)).definition() != \
            KerasModels(values[1], values[0], tf.int32, tf.Variable(1)).definition()


def test_a_damaged_weight_count_is_a_format_error() -> None:
    from dryml_tf._serializers import _arrays_in

    obj = build_models(train=False)
    with pytest.raises(FormatError, match="holds 1 weight arrays"):
        _arrays_in(obj.models["seq"].weights, [{}], None, "weight")


class LayerStack(Object):
    """Takes a Keras layer class as a constructor argument."""

    def __init__(self, layer: type, units: int) -> None:
        self.layer = layer(units)


def test_keras_layer_classes_are_trusted_constructor_arguments() -> None:
    import keras

    loaded = _save_load(LayerStack(keras.layers.Dense, 3))
    assert loaded.dry_args[0] is keras.layers.Dense and loaded.layer.units == 3


def test_a_keras_module_the_file_names_is_never_imported() -> None:
    # Keras imports any module under keras/keras_hub/... that a config names to find a class;
    # dryml refuses a config naming a module that is not imported yet, before Keras runs
    import sys

    import keras

    module = "keras.src.backend.numpy.core"  # not imported by `import keras`
    assert module not in sys.modules

    class Doubler(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            return x * 2

    Doubler.__module__ = module
    registered = keras.saving.register_keras_serializable(package="dryml_hostile")(Doubler)
    obj = build_models(train=False)
    obj.models = {"hostile": keras.Sequential([keras.Input((5,)), registered()])}
    buf = io.BytesIO()
    save_object(obj, buf)
    keras.saving.get_custom_objects().pop("dryml_hostile>Doubler")
    buf.seek(0)
    with pytest.raises(UntrustedClassError, match=f"names module '{module}'.*nothing was "):
        load_object(buf)
    assert module not in sys.modules


class DeferredKeras(Object):
    """Holds its Keras model as a stored value decoded on first use (as the trainables do)."""

    model = Deferred()

    def save_object_imp(self, store: Any) -> None:
        DeferredKeras.model.save(self, store)

    def load_object_imp(self, store: Any) -> None:
        DeferredKeras.model.load(self, store)


def test_allow_code_reaches_a_lambda_model_decoded_later() -> None:
    obj = DeferredKeras()
    obj.model = _lambda_models().models["lam"]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_object(obj, buf)
    buf.seek(0)
    refused = load_object(buf)
    with pytest.raises(UntrustedClassError, match="pass allow_code=True to load_object"):
        refused.model  # noqa: B018 - decoding is what refuses
    buf.seek(0)
    allowed = load_object(buf, allow_code=True)
    x, _ = make_data()
    assert np.asarray(allowed.model(x)).tobytes() == np.asarray(obj.model(x)).tobytes()


def _savedmodel_models(tmp_path: Path) -> KerasModels:
    """A Keras model whose TFSMLayer reads a SavedModel from ``tmp_path``."""
    import keras
    import tensorflow as tf

    class Doubles(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.float32)])
        def serve(self, x: Any) -> Any:
            return x * 2.0

    module = Doubles()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serve": module.serve})
    obj = build_models(train=False)
    obj.models = {"sm": keras.Sequential([keras.Input((5,)), keras.layers.TFSMLayer(
        str(tmp_path / "sm"), call_endpoint="serve", name="reader")])}
    return obj


def test_a_model_that_reads_a_savedmodel_from_disk_is_refused_at_save_and_at_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A TFSMLayer reads a SavedModel from a path on the saving machine, which a .dry file
    does not hold. Saving it gave a file that later failed with "the file contains Python
    code (a Keras Lambda layer), pass allow_code=True" (found by the hostile-file audit): it
    holds none, and allow_code would have let the file make Keras read that path. Saving is
    refused now, and a file that holds one (an older dryml-tf wrote them) is refused at load,
    allow_code or not."""
    from dryml.errors import SerializationError
    from dryml_tf import _serializers

    obj = _savedmodel_models(tmp_path)
    with pytest.raises(SerializationError, match=r"reads a SavedModel from disk \(TFSMLayer "
                                                 r"'reader' \(filepath '.*sm'\)\)"):
        save_object(obj, io.BytesIO())
    with monkeypatch.context() as patched:  # what an older dryml-tf wrote
        patched.setattr(_serializers, "file_layers", lambda config: [])
        save_object(obj, tmp_path / "old.dry")
    for allow_code in (False, True):
        with pytest.raises(FormatError, match="would read a SavedModel from disk .*nothing "
                                              "was read"):
            load_object(tmp_path / "old.dry", allow_code=allow_code)


def _with_config_edited(obj: Object, edit: Any) -> bytes:
    """``obj`` saved, with its Keras config member edited (valid checksums: what a crafted
    file holds reaches the checks behind them)."""
    import json

    import zstandard
    from backend_checks import import_file

    dryfiles = import_file("dryfiles_for_tf", Path(__file__).parents[1] / "core" / "dryfiles.py")
    buf = io.BytesIO()
    save_object(obj, buf)
    manifest, members = dryfiles.explode(buf.getvalue())
    for name, (stored, raw_size, compression, kind) in list(members.items()):
        raw = (zstandard.ZstdDecompressor().decompress(stored, max_output_size=raw_size)
               if compression == "zstd" else stored)
        if raw[:1] == b"{" and b'"class_name"' in raw:
            config = json.loads(raw)
            edit(config)
            new = json.dumps(config).encode()
            members[name] = (new, len(new), "none", kind)
    return dryfiles.build_file(manifest, members)  # type: ignore[no-any-return]


def _one_dense() -> KerasModels:
    import keras

    obj = build_models(train=False)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    obj.models = {"m": model}
    return obj


def test_a_config_naming_a_keras_function_outside_its_modelling_ones_is_refused(
        tmp_path: Path) -> None:
    """Found by an audit: Keras' safe mode lets a config name any public Keras function, so
    a Lambda of keras.visualization.plot_image_gallery wrote a file the config named when
    the model ran, and a learning rate of keras.datasets.cifar10.load_data downloaded the
    data set at each training step. Functions of Keras' activations, losses, metrics and
    ops still load (a loss given as keras.losses.mean_squared_error)."""
    target = tmp_path / "written.png"

    def lam(config: dict[str, Any]) -> None:
        config["config"]["layers"].append({
            "module": "keras.layers", "class_name": "Lambda", "registered_name": None,
            "config": {"name": "lam", "trainable": True, "dtype": "float32",
                       "function": {"class_name": "function", "module": "keras.visualization",
                                    "config": "plot_image_gallery"},
                       "arguments": {"path": str(target), "value_range": [0, 1]}}})

    def rate(config: dict[str, Any]) -> None:
        config["compile_config"]["optimizer"]["config"]["learning_rate"] = {
            "class_name": "function", "module": "keras.datasets.cifar10", "config": "load_data"}

    def lam_as(module: str, name: str) -> Any:
        def edit(config: dict[str, Any]) -> None:  # the function named as a class (review)
            lam(config)
            config["config"]["layers"][-1]["config"]["function"] = {
                "class_name": name, "module": module, "config": {}}
        return edit

    for edit, where in ((lam, "Lambda 'lam'"), (rate, "Adam"),
                        (lam_as("keras.visualization", "plot_image_gallery"), ""),
                        (lam_as("keras", "visualization.plot_image_gallery"), "")):
        data = _with_config_edited(_one_dense(), edit)
        with pytest.raises(UntrustedClassError, match=f"names the function keras.*in {where}.*"
                                                      "not one of Keras' activations, losses, "
                                                      "metrics or ops"):
            load_object(io.BytesIO(data))
    assert not target.exists()

    import keras

    obj = build_models(train=False)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="gelu")])
    model.compile(optimizer="adam", loss=keras.losses.mean_squared_error,
                  metrics=[keras.metrics.mean_absolute_error])
    obj.models = {"m": model}
    assert _save_load(obj).models["m"].count_params() == model.count_params()
    # arrays of Keras' own dtype names load (review: bfloat16 was taken for an altered file)
    import ml_dtypes

    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(
        3, bias_initializer=keras.initializers.Constant(np.ones(3, ml_dtypes.bfloat16)))])
    obj.models = {"m": model}
    assert _save_load(obj).models["m"].count_params() == model.count_params()


def test_a_config_spelling_out_a_huge_array_or_an_aliased_savedmodel_layer_is_refused() -> None:
    """Found by an audit: a __numpy__ value of dtype (16000,16000)f8 in a 4 KB file's loss
    allocated 1.9 GB; a TFSMLayer named "layers.TFSMLayer" under module "keras" (the class
    Keras finds) passed the SavedModel refusal and, with allow_code, ran the SavedModel's
    graph from a path the file named."""
    def numpy(config: dict[str, Any]) -> None:
        config["compile_config"]["loss"] = {"class_name": "__numpy__", "config": {
            "value": 0, "dtype": "(16000,16000)f8"}}

    with pytest.raises(FormatError, match=r"spells out an array of dtype '\(16000,16000\)f8'"):
        load_object(io.BytesIO(_with_config_edited(_one_dense(), numpy)))

    def alias(config: dict[str, Any]) -> None:
        config["config"]["layers"].append({
            "module": "keras", "class_name": "layers.TFSMLayer", "registered_name": None,
            "config": {"name": "r", "filepath": "/nonexistent/sm", "call_endpoint": "serve"}})

    data = _with_config_edited(_one_dense(), alias)
    for allow_code in (False, True):
        with pytest.raises(FormatError, match="would read a SavedModel from disk"):
            load_object(io.BytesIO(data), allow_code=allow_code)


def test_a_bare_keras_layer_is_refused_saying_what_to_put_instead(tmp_path: Path) -> None:
    import keras

    from dryml.errors import SerializationError

    obj = build_models(train=False)
    layer = keras.layers.Dense(3, name="head")
    layer.build((None, 4))
    obj.models = {"layer": layer}
    with pytest.raises(SerializationError, match=r"a Keras layer on its own \(Dense 'head'\).*"
                                                  r"keras\.Sequential\(\[keras\.Input"):
        save_object(obj, tmp_path / "layer.dry")
    assert not (tmp_path / "layer.dry").exists()
    obj.models = {"model": keras.Sequential([keras.Input((4,)), layer])}  # what it advises
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no plugin warning: one plugin claims Model and Layer
        loaded = _save_load(obj)
    x = np.ones((2, 4), dtype=np.float32)
    assert np.asarray(loaded.models["model"](x)).tobytes() == np.asarray(
        obj.models["model"](x)).tobytes()
