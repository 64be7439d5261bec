"""Keras 3 models and TensorFlow values in ``.dry`` files (never pickle, never a Lambda).

A model is written the way Keras' own ``.keras`` format describes it, minus the zip and HDF5:
the architecture (with build and compile config) is Keras' JSON config from
``keras.saving.serialize_keras_object``; every weight, then every optimizer variable, is a raw
``.npy`` member. Loading rebuilds the model with ``keras.saving.deserialize_keras_object`` in
Keras' safe mode (no Python lambdas or bytecode; only built-in Keras classes and classes
registered with ``keras.saving.register_keras_serializable`` in this process), then assigns
the arrays.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from dryml.errors import ClassNotFoundError, FormatError, UntrustedClassError
from dryml_tf._codecs import array_from_json, array_to_json, check_versions, record_versions

__all__ = ["KERAS_MODEL", "TF_VALUE", "KerasModelSerializer", "TFValueSerializer"]

def _arrays_out(variables: list[Any], writer: Any) -> list[dict[str, Any]]:
    return [array_to_json(np.asarray(v.numpy()), tf.as_dtype(v.dtype), writer, member=True)
            for v in variables]


def _arrays_in(variables: list[Any], entries: Any, reader: Any, what: str) -> None:
    if not isinstance(entries, list) or len(entries) != len(variables):
        got = len(entries) if isinstance(entries, list) else "no"
        raise FormatError(f"the file holds {got} {what} arrays; the rebuilt model has "
                          f"{len(variables)} (was the model's class changed since it was saved?)")
    for var, entry in zip(variables, entries, strict=True):
        array, _ = array_from_json(entry, reader)
        if tuple(array.shape) != tuple(var.shape):
            raise FormatError(f"{what} {var.path!r}: the file holds shape {array.shape}, the "
                              f"rebuilt model has {tuple(var.shape)}")
        var.assign(array)


class KerasModelSerializer:
    """``store.put(name, model)`` for Keras 3 models (Sequential, functional, registered
    subclassed)."""

    def dump(self, value: Any, writer: Any) -> dict[str, Any]:
        """Keras' JSON config as a member, weights and optimizer variables as arrays."""
        record_versions(writer)
        config = keras.saving.serialize_keras_object(value)
        meta: dict[str, Any] = {
            "class": config.get("class_name"),
            "config": writer.add_bytes(json.dumps(config).encode()),
            "weights": _arrays_out(value.weights, writer),
        }
        optimizer = getattr(value, "optimizer", None)
        if optimizer is not None and getattr(optimizer, "built", False):
            meta["optimizer"] = _arrays_out(optimizer.variables, writer)
        return meta

    def load(self, meta: Any, reader: Any) -> Any:
        """Rebuild in safe mode, then assign weights (and optimizer state when recorded)."""
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), str):
            raise FormatError("a Keras model entry must name its config member")
        check_versions(reader)
        try:
            config = json.loads(reader.get_bytes(meta["config"]))
        except ValueError as exc:
            raise FormatError(f"the Keras config is not valid JSON ({exc})") from None
        model = _deserialize(config)
        _arrays_in(model.weights, meta.get("weights"), reader, "weight")
        if "optimizer" in meta:
            optimizer = getattr(model, "optimizer", None)
            if optimizer is None:
                raise FormatError("the file holds optimizer state but the model's compile "
                                  "config has no optimizer")
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
            _arrays_in(optimizer.variables, meta["optimizer"], reader, "optimizer variable")
        return model


def _safe_mode_scope() -> Any:
    """Keras' safe-mode scope: as well as the argument, since a process-wide
    ``keras.config.enable_unsafe_deserialization()`` would otherwise override
    ``safe_mode=True``."""
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # moved in some Keras release: the argument still applies
        return contextlib.nullcontext()
    return SafeModeScope(True)


def _deserialize(config: Any) -> Any:
    try:
        with _safe_mode_scope(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*compile.*", category=UserWarning)
            return keras.saving.deserialize_keras_object(config, safe_mode=True)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise UntrustedClassError(
                f"the Keras model holds Python code (a Lambda layer or lambda function), "
                f"which Keras' safe mode refuses to load: {exc}. Replace the Lambda with a "
                "layer class registered with keras.saving.register_keras_serializable."
            ) from None
        raise FormatError(f"Keras could not rebuild the model: {exc}") from None
    except TypeError as exc:
        if "Could not locate" in str(exc) or "register_keras_serializable" in str(exc):
            raise ClassNotFoundError(
                f"Keras could not find a class the model uses: {exc}. Import the module "
                "that defines it (decorated with keras.saving.register_keras_serializable) "
                "before load_object."
            ) from None
        raise FormatError(f"Keras could not rebuild the model: {exc}") from None


class TFValueSerializer:
    """``store.put(name, tensor_or_variable)``: always a ``.npy`` member."""

    def dump(self, value: Any, writer: Any) -> dict[str, Any]:
        """The value's array, dtype, shape (and variable flags)."""
        record_versions(writer)
        out = array_to_json(np.asarray(value.numpy()), value.dtype, writer, member=True)
        if isinstance(value, tf.Variable):
            out["variable"] = {"trainable": bool(value.trainable),
                               "name": value.name.split(":")[0]}
        return out

    def load(self, meta: Any, reader: Any) -> Any:
        """A tensor (or a new variable) with the recorded value."""
        check_versions(reader)
        array, dtype = array_from_json(meta, reader)
        variable = meta.get("variable")
        if isinstance(variable, dict):
            name = variable.get("name")
            return tf.Variable(array, dtype=dtype, trainable=bool(variable.get("trainable")),
                               name=name if isinstance(name, str) and name else None)
        return tf.constant(array, dtype=dtype)


KERAS_MODEL = KerasModelSerializer()
TF_VALUE = TFValueSerializer()
