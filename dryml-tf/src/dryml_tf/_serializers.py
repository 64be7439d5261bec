"""Keras 3 models and TensorFlow values in ``.dry`` files (never pickle).

A model is written the way Keras' own ``.keras`` format describes it, minus the zip and HDF5:
the architecture (with build and compile config) is Keras' JSON config from
``keras.saving.serialize_keras_object``; the state is what Keras' own save walk produces
(every saveable's variables as ``.npy`` members, the optimizer's included, and the files
layers write as assets as members), plus what that walk loses: lookup vocabularies exactly
and the random state (see :mod:`dryml_tf._keras_state`). Two entries of one file that share
layers are refused (each would load as a model of its own). Loading rebuilds the model with
``keras.saving.deserialize_keras_object`` in Keras' safe mode (only built-in Keras classes and
classes registered with ``keras.saving.register_keras_serializable`` in this process), then
runs Keras' load walk and finalizes every layer.

Python code in a model (a ``Lambda`` layer's lambda, stored by Keras as marshalled bytecode)
runs only when the caller opts in with ``load_object(path, allow_code=True)``; saving such a
model warns that the file will need it.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from dryml.errors import (
    ClassNotFoundError,
    DrymlWarning,
    FormatError,
    SerializationError,
    UntrustedClassError,
)
from dryml_tf._codecs import array_from_json, array_to_json, check_versions, record_versions
from dryml_tf._deferred import rebuild, stored_bytes
from dryml_tf._keras_state import finalize_layers, load_state, save_state

__all__ = ["KERAS_LAYER", "KERAS_MODEL", "TF_VALUE", "KerasLayerRefusal", "KerasModelSerializer",
           "TFValueSerializer"]

#: The refusal when a file holds code and the caller did not pass ``allow_code=True``.
CODE_REFUSED = ("the file contains Python code (a Keras Lambda layer), pass allow_code=True to "
                "load_object if you trust it")

#: Per file being written: the variables of the Keras models written to it, by id, each with
#: a reference to itself (the id is still that variable's), to its model and its model's name.
_written: weakref.WeakKeyDictionary[
    Any, dict[int, tuple[weakref.ref[Any], weakref.ref[Any], str]]] = weakref.WeakKeyDictionary()


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
        """Keras' JSON config as a member; variables and assets as Keras' save walk gives."""
        record_versions(writer)
        with warnings.catch_warnings():  # Keras' lambda warning advises safe_mode=False
            warnings.filterwarnings("ignore", message=".*lambda.*", category=UserWarning)
            config = keras.saving.serialize_keras_object(value)
        reads = file_layers(config)
        if reads:
            raise SerializationError(
                f"the Keras model reads a SavedModel from disk ({', '.join(reads)}): a .dry "
                "file holds the whole model and cannot hold that one; build those layers in "
                "Keras (or load the SavedModel with keras.layers.TFSMLayer after load_object)")
        code = code_layers(config)
        if code:
            warnings.warn(
                f"the Keras model holds Python code ({_describe(code)}): loading the file will "
                "need load_object(path, allow_code=True), which runs that code; to avoid "
                "this, replace the Lambda with a layer class registered with "
                "keras.saving.register_keras_serializable", DrymlWarning, stacklevel=4)
        try:
            config_bytes = json.dumps(config).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"the Keras model's config is not JSON ({exc})") from None
        _check_not_shared(value, writer)
        optimizer = getattr(value, "optimizer", None)
        if optimizer is not None and not _compiles_on_load(value):
            warnings.warn(
                f"the Keras model {value.name!r} ({type(value).__qualname__}) overrides "
                "compile() but not compile_from_config(), so Keras will not compile it when "
                "it is loaded: it will load uncompiled, without its optimizer state (step "
                "count, moments). Call compile() again after load_object (training then "
                "starts with a fresh optimizer), or override get_compile_config() and "
                "compile_from_config()", DrymlWarning, stacklevel=4)
        return {
            "class": config.get("class_name"),
            "config": writer.add_bytes(config_bytes),
            **save_state(value, writer),
            "optimizer_built": bool(optimizer is not None and getattr(optimizer, "built",
                                                                      False)),
        }

    def load(self, meta: Any, reader: Any) -> Any:
        """Rebuild in safe mode (Lambda code only with ``allow_code``), restore the state
        through Keras' load walk, finalize every layer."""
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), str):
            raise FormatError("a Keras model entry must name its config member")
        check_versions(reader)
        try:
            config = json.loads(reader.get_bytes(meta["config"]))
        except (ValueError, RecursionError) as exc:
            raise FormatError(f"the Keras config is not valid JSON ({exc})") from None
        reads = file_layers(config)
        if reads:  # allow_code or not: the file would make Keras read a path on this machine
            raise FormatError(
                f"the Keras model would read a SavedModel from disk ({', '.join(reads)}); "
                "dryml never writes such a model (the file was altered): refused, nothing "
                "was read")
        code = code_layers(config)
        allow_code = getattr(getattr(reader, "trust", None), "allow_code", False) is True
        if code and not allow_code:
            raise UntrustedClassError(f"{CODE_REFUSED} ({_describe(code)}); nothing was run")
        if not allow_code:
            _check_functions(config)
        _check_values(config)
        _check_modules(config)
        stored = stored_bytes([meta.get(key) for key in ("state", "weights", "optimizer")],
                              reader)
        model = rebuild(config, lambda part: _deserialize(part, allow_code=allow_code), stored)
        if (isinstance(config, dict) and config.get("compile_config")
                and not getattr(model, "compiled", True)):
            meta = _without_optimizer(model, meta)
        optimizer = _loss_scaled(model, meta.get("state"))
        if "state" not in meta:  # written by dryml-tf 0.1.0: model.weights in order
            _legacy_load(model, meta, reader)
            return model
        if meta.get("optimizer_built"):
            if optimizer is None:
                raise FormatError("the file holds optimizer state but the model's compile "
                                  "config has no optimizer")
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
        load_state(model, meta, reader)
        return model


def _compiles_on_load(model: Any) -> bool:
    """Whether Keras compiles ``model`` again from its compile config when it is loaded: not
    when its class overrides ``compile()`` without ``compile_from_config()`` (GAN and VAE
    examples do; Keras then warns and leaves the model uncompiled)."""
    cls = type(model)
    return (cls.compile is keras.Model.compile
            or cls.compile_from_config is not keras.Model.compile_from_config)


def _without_optimizer(model: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` without the optimizer's state, which the model, saved compiled but not
    compiled again by Keras (a custom ``compile()``), has no optimizer to take; warns."""
    state = meta.get("state")
    entries = state if isinstance(state, list) else []
    kept = [e for e in entries if not (isinstance(e, dict) and isinstance(e.get("path"), str)
                                       and (e["path"] + "/").startswith("optimizer/"))]
    held = len(kept) < len(entries) or "optimizer" in meta
    warnings.warn(
        f"the Keras model {getattr(model, 'name', '')!r} ({type(model).__qualname__}) was "
        "saved compiled, but "
        "its class overrides compile() and not compile_from_config(), so Keras did not "
        "compile it: it is loaded uncompiled"
        + (", and the optimizer state in the file (step count, moments) was skipped"
           if held else "")
        + ". Call compile() before training it (training then starts with a fresh "
        "optimizer), or override get_compile_config() and compile_from_config()",
        DrymlWarning, stacklevel=6)
    out = {k: v for k, v in meta.items() if k not in ("optimizer", "optimizer_built")}
    if isinstance(state, list):
        out["state"] = kept
    return out


def _loss_scaled(model: Any, state: Any) -> Any:
    """The model's optimizer, wrapped in a ``LossScaleOptimizer`` again when the file holds
    one's state: ``compile`` wraps it only under a ``mixed_float16`` policy, and Keras rebuilds
    a model under the process's policy (float32 in a fresh process), not the one it was
    saved with, so the saved loss scale and the inner optimizer's slots had nowhere to go."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    entries = state if isinstance(state, list) else []
    paths = [e.get("path") for e in entries if isinstance(e, dict)]
    inner = "optimizer/inner_optimizer/"
    if not any(isinstance(p, str) and (p + "/").startswith(inner) for p in paths):
        return optimizer
    model.optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return model.optimizer


def _legacy_load(model: Any, meta: dict[str, Any], reader: Any) -> None:
    _arrays_in(model.weights, meta.get("weights"), reader, "weight")
    if "optimizer" in meta:
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise FormatError("the file holds optimizer state but the model's compile "
                              "config has no optimizer")
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        _arrays_in(optimizer.variables, meta["optimizer"], reader, "optimizer variable")
    finalize_layers(model)


def _check_not_shared(model: Any, writer: Any) -> None:
    """Refuse a model that shares variables with another Keras model already written to this
    file: each entry loads as a model of its own, so the two would no longer share them. (One
    model written twice is not refused: a KerasTrainable's network Object holds the model the
    trainable trains, and both store it.)"""
    try:
        seen = _written.setdefault(writer, {})
    except TypeError:  # a writer that cannot be weakly referenced: nothing to compare with
        return
    variables = list(model.variables)
    shared = {id(v) for v in variables if id(v) in seen and seen[id(v)][0]() is v
              and seen[id(v)][1]() is not model}
    if shared:
        other = seen[next(iter(shared))][2]
        parts = [layer.name for layer in getattr(model, "layers", [])
                 if any(id(v) in shared for v in layer.variables)]
        what = ("is part of" if len(shared) == len(variables)
                else f"shares layers ({', '.join(map(repr, parts))}) with")
        raise SerializationError(
            f"the Keras model {model.name!r} {what} the Keras model {other!r}, stored "
            "earlier in this file: each entry loads as a model of its own, so after loading "
            "they would no longer share those layers (training one would not change the "
            "other). Store only the model that contains the other and get the part from it "
            "after loading (e.g. model.get_layer(name))")
    for v in variables:
        seen.setdefault(id(v), (weakref.ref(v), weakref.ref(model), model.name))


def _layer_nodes(config: Any) -> Iterator[tuple[dict[str, Any], str]]:
    """Every object in a Keras config, with the layer (or object) it belongs to."""
    stack: list[tuple[Any, str]] = [(config, "the model")]
    while stack:
        node, owner = stack.pop()
        if isinstance(node, dict):
            inner, name = node.get("config"), node.get("class_name")
            if isinstance(name, str) and name != "__lambda__" and isinstance(inner, dict):
                owner = f"{name} {inner.get('name', '')!r}"  # a lambda belongs to its layer
            yield node, owner
            stack.extend((child, owner) for child in reversed(node.values()))
        elif isinstance(node, list):
            stack.extend((child, owner) for child in reversed(node))


def code_layers(config: Any) -> list[str]:
    """Names of the layers (or objects) in a Keras config that carry Python code: Keras writes
    a lambda as ``{"class_name": "__lambda__", ...}`` (marshalled bytecode)."""
    return list(dict.fromkeys(owner for node, owner in _layer_nodes(config)
                              if node.get("class_name") == "__lambda__"))


def file_layers(config: Any) -> list[str]:
    """The layers in a Keras config that read a model from a path on this machine
    (``TFSMLayer``: a SavedModel), which a ``.dry`` file cannot hold."""
    return list(dict.fromkeys(
        f"{owner} (filepath {node['config'].get('filepath')!r})"
        for node, owner in _layer_nodes(config)
        # by the class Keras would find: "layers.TFSMLayer" under module "keras" is it too
        if isinstance(node.get("class_name"), str)
        and node["class_name"].rpartition(".")[2] == "TFSMLayer"
        and isinstance(node.get("config"), dict)))


#: Where the functions a Keras config may name live: Keras' activations, losses, metrics and
#: tensor ops ("builtins" is Keras' name for its own registered functions). Any other public
#: Keras function is refused: a Lambda of keras.visualization.plot_image_gallery wrote a file
#: the config named when the model ran, and a learning rate of keras.datasets.*.load_data
#: downloaded a data set at each training step.
_FUNCTION_MODULES = ("builtins", "keras.activations", "keras.losses", "keras.metrics",
                     "keras.ops", "keras.src.activations", "keras.src.losses",
                     "keras.src.metrics", "keras.src.ops")


def _check_functions(config: Any) -> None:
    """UntrustedClassError for a function a Keras config names outside
    :data:`_FUNCTION_MODULES` (``load_object(path, allow_code=True)`` lets the file choose)."""
    for node, owner in _layer_nodes(config):
        name, module = node.get("class_name"), node.get("module")
        if name != "function":
            # a class node whose name Keras resolves to a function is one too: Keras joins
            # module and name ("keras" + "visualization.plot_image_gallery") and takes what
            # it finds, class or not (found by review)
            found = _keras_symbol(module, name)
            if found is None or isinstance(found, type):
                continue
            module = getattr(found, "__module__", module)
            node = {"config": getattr(found, "__name__", name)}
        if not (isinstance(module, str) and any(
                module == allowed or module.startswith(allowed + ".")
                for allowed in _FUNCTION_MODULES)):
            raise UntrustedClassError(
                f"the Keras config names the function {module}.{node.get('config')} (in "
                f"{owner}), which is not one of Keras' activations, losses, metrics or ops: "
                "a file could name any Keras function (one that writes or downloads files). "
                "Refused, nothing was run; if you trust the file, load it with "
                "allow_code=True")


def _keras_symbol(module: Any, name: Any) -> Any:
    """What ``module.name`` is, looked up among modules already imported (None when it is
    not there): how Keras finds the class or function a config node names."""
    if not (isinstance(module, str) and isinstance(name, str)) or not (
            module == "keras" or module.startswith("keras.")):
        return None
    found: Any = sys.modules.get(module)
    for part in name.split("."):
        found = getattr(found, part, None)
        if found is None:
            return None
    return found


_NUMBER_DTYPES = re.compile(r"(bool|u?int\d+|b?float\d+|float8_\w+|complex\d+|string)")


def _check_values(config: Any) -> None:
    """FormatError for an array a Keras config spells out (``__numpy__``/``__tensor__``) in a
    dtype other than plain numbers: a dtype such as ``(16000,16000)f8`` or ``S1800000000``
    made a 4 KB file allocate gigabytes per entry, in a loss or a learning rate."""

    for node, _ in _layer_nodes(config):
        if node.get("class_name") not in ("__numpy__", "__tensor__"):
            continue
        inner = node.get("config")
        dtype = inner.get("dtype") if isinstance(inner, dict) else None
        # Keras writes its own dtype names (bfloat16, float8_e4m3fn, string): those, or
        # numpy's for plain numbers; never a sub-array or a sized str/bytes/void dtype
        plain = dtype is None or (isinstance(dtype, str)
                                  and _NUMBER_DTYPES.fullmatch(dtype) is not None)
        if not plain:
            raise FormatError(f"the Keras config spells out an array of dtype {dtype!r}: "
                              "only numbers are; the file was altered")


def _check_modules(config: Any) -> None:
    """Keras imports a module a config names (under ``keras``, ``keras_hub``...) to find a
    class; a file must not make it import anything. Every module named must already be
    imported: Keras' own are once Keras is, and a registered class's module is where it was
    registered."""
    for node, _ in _layer_nodes(config):
        module = node.get("module")
        if "class_name" in node and module is not None and (
                not isinstance(module, str) or module not in sys.modules):
            raise UntrustedClassError(
                f"the Keras config names module {module!r} (class "
                f"{node.get('class_name')!r}), which is not imported; nothing was "
                "imported. If you trust the file, import the module that defines the "
                "class (registered with keras.saving.register_keras_serializable) "
                "before load_object.")


def _describe(code: list[str]) -> str:
    return "in " + ", ".join(code)


def _safe_mode_scope(safe: bool) -> Any:
    """Keras' safe-mode scope: as well as the argument, since a process-wide
    ``keras.config.enable_unsafe_deserialization()`` would otherwise override
    ``safe_mode=True``."""
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # moved in some Keras release: the argument still applies
        return contextlib.nullcontext()
    return SafeModeScope(safe)


def _deserialize(config: Any, allow_code: bool = False) -> Any:
    try:
        with _safe_mode_scope(not allow_code), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*compile.*", category=UserWarning)
            return keras.saving.deserialize_keras_object(config, safe_mode=not allow_code)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            # Keras' own advice (safe_mode=False) is not something dryml offers
            raise UntrustedClassError(f"{CODE_REFUSED}; nothing was run") from None
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


class KerasLayerRefusal:
    """``store.put(name, layer)`` of a Keras layer that is not a model: refused, saying how to
    keep it (a layer on its own has no input shape to rebuild it with; a model has)."""

    def dump(self, value: Any, writer: Any) -> dict[str, Any]:
        """Raises SerializationError naming the layer and what to put instead."""
        raise SerializationError(
            f"a Keras layer on its own ({type(value).__qualname__} {value.name!r}) cannot be "
            "saved: put a model that holds it instead, e.g. keras.Sequential([keras.Input("
            "shape=...), layer]) (its weights, config and state come back with it), or "
            "store its weights (layer.get_weights(), a list of numpy arrays)")

    def load(self, meta: Any, reader: Any) -> Any:
        """Never written, so never read: a file that claims it was crafted."""
        raise FormatError("the file holds an entry of the Keras layer serializer, which never "
                          "writes one; the file was crafted or damaged")


KERAS_MODEL = KerasModelSerializer()
KERAS_LAYER = KerasLayerRefusal()
TF_VALUE = TFValueSerializer()
