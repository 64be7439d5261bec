"""dryml-tf: Keras models as entries of a file: models sharing layers, models with their own
``compile()``, compiled models never trained."""

from __future__ import annotations

import functools
import io
import os
import warnings
from typing import Any

import numpy as np
import pytest

from dryml import Object, load_object, save_object
from dryml.errors import DrymlWarning, SerializationError

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("tensorflow")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

X = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")


class Models(Object):
    """Keeps Keras models in the store, one entry each."""

    def __init__(self) -> None:
        self.models: dict[str, Any] = {}

    def save_object_imp(self, store: Any) -> None:
        for name, model in self.models.items():
            store.put(name, model)

    def load_object_imp(self, store: Any) -> None:
        self.models = {name: store.get(name) for name in store.names()}


def _round_trip(**models: Any) -> dict[str, Any]:
    obj = Models()
    obj.models = models
    buf = io.BytesIO()
    save_object(obj, buf)
    buf.seek(0)
    return load_object(buf).models  # type: ignore[no-any-return]


def _autoencoder() -> tuple[Any, Any]:
    import keras

    encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="enc")
    inp = keras.Input((4,))
    autoencoder = keras.Model(inp, keras.layers.Dense(4)(encoder(inp)), name="ae")
    autoencoder.compile(optimizer="adam", loss="mse")
    return encoder, autoencoder


def test_two_entries_sharing_layers_are_refused_saying_to_store_the_containing_model() -> None:
    """Each entry loads as a model of its own: the encoder stored beside the autoencoder that
    contains it came back as a copy that training the autoencoder no longer changed."""
    encoder, autoencoder = _autoencoder()
    with pytest.raises(SerializationError, match=r"'ae' shares layers \('enc'\) with the Keras "
                                                 r"model 'enc'.*Store only the model that "
                                                 r"contains the other"):
        _round_trip(encoder=encoder, autoencoder=autoencoder)
    with pytest.raises(SerializationError, match=r"'enc' is part of the Keras model 'ae'"):
        _round_trip(autoencoder=autoencoder, encoder=encoder)
    loaded = _round_trip(autoencoder=autoencoder)["autoencoder"]  # the way to do it
    assert np.asarray(loaded.get_layer("enc")(X)).tobytes() == np.asarray(encoder(X)).tobytes()


def test_one_model_in_two_entries_saves() -> None:
    """A KerasTrainable whose network is an Object holding a model trains that very model, and
    both store it (in the worker's reply too)."""
    encoder, _ = _autoencoder()
    loaded = _round_trip(first=encoder, second=encoder)
    assert all(np.asarray(m(X)).tobytes() == np.asarray(encoder(X)).tobytes()
               for m in loaded.values())


@functools.cache
def _one_dense_model() -> type:
    """The base of the subclassed models below: one Dense unit (defined on first use:
    importing this module does not import TensorFlow)."""
    import keras

    class OneDense(keras.Model):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(1)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    return OneDense


@functools.cache
def _custom_compile_class() -> type:
    """A subclassed model with its own ``compile()``, as Keras' GAN and VAE examples have."""
    import keras

    @keras.saving.register_keras_serializable(package="dryml_tests_entries")
    class OwnCompile(_one_dense_model()):  # type: ignore[misc]
        def compile(self, optimizer: Any = "adam", **kwargs: Any) -> None:
            super().compile(optimizer=optimizer, loss="mse", **kwargs)

    return OwnCompile


@pytest.mark.parametrize("trained", [False, True])
def test_a_model_with_its_own_compile_loads_uncompiled_saying_so(trained: bool) -> None:
    """Keras does not compile such a model when loading it; its optimizer state in the file
    made the load fail with a FormatError."""
    import keras

    model = _custom_compile_class()()
    model(X)
    model.compile(keras.optimizers.Adam(0.01))
    if trained:
        model.fit(X, X[:, :1], epochs=1, verbose=0)
    with pytest.warns(DrymlWarning, match="overrides compile\\(\\) but not compile_from_config"
                                          "\\(\\).*without its optimizer state"):
        obj = Models()
        obj.models = {"model": model}
        buf = io.BytesIO()
        save_object(obj, buf)
    buf.seek(0)
    with pytest.warns(DrymlWarning, match="loaded uncompiled, and the optimizer state in the "
                                          "file .* was skipped. Call compile\\(\\)"):
        loaded = load_object(buf).models["model"]
    assert np.asarray(loaded(X)).tobytes() == np.asarray(model(X)).tobytes()
    loaded.compile(keras.optimizers.Adam(0.01))
    loaded.fit(X, X[:, :1], epochs=1, verbose=0)


def test_a_compiled_model_never_trained_loads_without_warnings() -> None:
    """Its optimizer, saved unbuilt, was built while loading, and Keras warned that it skipped
    loading the optimizer's variables."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = _round_trip(model=model)["model"]
    assert [str(w.message) for w in caught] == []
    for m in (model, loaded):
        m.fit(X, X[:, :2], epochs=1, batch_size=8, verbose=0, shuffle=False)
    assert np.asarray(model(X)).tobytes() == np.asarray(loaded(X)).tobytes()


@functools.cache
def _own_compile_from_config_class() -> type:
    """A subclassed model whose compile_from_config sets what the optimizer's config omits."""
    import keras

    @keras.saving.register_keras_serializable(package="dryml_tests_entries")
    class OwnCompileFromConfig(_one_dense_model()):  # type: ignore[misc]
        def compile_from_config(self, config: Any) -> None:
            super().compile_from_config(config)
            self.optimizer.exclude_from_weight_decay(var_names=["bias"])

    return OwnCompileFromConfig


def test_a_models_own_compile_from_config_runs_on_load_as_in_keras() -> None:
    """dryml compiled such a model itself, so the AdamW exclusion it sets was lost and
    training on after a load differed from training on without one (by 0.01)."""
    import keras

    keras.utils.set_random_seed(0)
    model = _own_compile_from_config_class()()
    model(X[:1])
    optimizer = keras.optimizers.AdamW(0.05, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(X, X[:, :1], epochs=1, batch_size=8, verbose=0, shuffle=False)
    loaded = _round_trip(model=model)["model"]
    for m in (model, loaded):
        m.fit(X, X[:, :1], epochs=1, batch_size=8, verbose=0, shuffle=False)
    assert np.asarray(model(X)).tobytes() == np.asarray(loaded(X)).tobytes()


def _mean_square(y: Any, p: Any) -> Any:
    import keras

    return keras.ops.mean((y - p) ** 2)


@functools.cache
def _own_compile_with_a_plain_loss_class() -> type:
    import keras

    @keras.saving.register_keras_serializable(package="dryml_tests_entries")
    class OwnCompilePlainLoss(_one_dense_model()):  # type: ignore[misc]
        def compile(self, **kwargs: Any) -> None:
            super().compile(optimizer="adam", loss=_mean_square)

    return OwnCompilePlainLoss


def test_a_model_with_its_own_compile_and_an_unregistered_loss_still_loads() -> None:
    """Keras skips compiling such a model when loading it, so its compile config (naming a
    loss no registry knows) is never read; dryml read it to bound its metrics and failed."""
    model = _own_compile_with_a_plain_loss_class()()
    model(X)
    model.compile()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DrymlWarning)
        loaded = _round_trip(model=model)["model"]
    assert np.asarray(loaded(X)).tobytes() == np.asarray(model(X)).tobytes()
