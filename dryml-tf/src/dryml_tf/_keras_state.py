"""A Keras model's state (variables and assets) exactly as Keras' own ``.keras`` format sees it.

Keras saves a model by walking its saveables (the model, its layers, nested models, the
optimizer) and calling each one's ``save_own_variables(store)`` and ``save_assets(dir)``;
loading calls ``load_own_variables(store)`` and ``load_assets(dir)``, and layers finish their
own state there (``Normalization`` recomputes its mean and variance, lookup layers rebuild
their tables from the vocabulary file). dryml runs Keras' own walk with two stores of its
own: variables become ``.npy`` members, and every file a layer writes into its asset
directory becomes a member of the ``.dry`` file (never pickle). On load the asset files are
written back into a fresh temporary directory (checked relative paths, bounded count and
size) for ``load_assets``, and every layer with restored variables is finalized
(``finalize_state()``), as Keras' loaders do.

Two things are kept beyond what Keras' walk keeps. A vocabulary layer's vocabulary is stored
exactly, as a JSON list, and restored with ``set_vocabulary``: Keras writes it as lines of
text and splits them again, which drops an empty token and splits one holding a line break.
The model's random state (dropout's seed generators), which Keras does not save, is stored
too, so that ``model(x, training=True)`` and further training go on as they would have.
"""

from __future__ import annotations

import codecs
import contextlib
import inspect
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from keras.src.layers.preprocessing.index_lookup import IndexLookup
from keras.src.saving import saving_lib

from dryml.errors import FormatError, SerializationError
from dryml_tf._codecs import array_from_json, array_to_json

__all__ = ["MAX_ASSET_BYTES", "MAX_ASSET_FILES", "finalize_layers", "load_state", "restore_rng",
           "rng_variables", "save_state"]

#: At most this many asset files per model (a layer that writes assets writes a few).
MAX_ASSET_FILES = 10_000
#: At most this many bytes of asset files per model, written and read.
MAX_ASSET_BYTES = 2 * 2**30
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")
_MAX_DEPTH = 64


class _VariableStore(saving_lib.NpzIOStore):  # type: ignore[misc]
    """Keras' weights-store interface over dicts: ``make`` while saving, ``get`` while
    loading (arrays decoded from the file on demand). Subclasses Keras' store so that
    Keras' type check accepts it; nothing of the parent's file handling is used."""

    def __init__(self, load: Any = None) -> None:
        self.contents: dict[str, Any] = {}
        self._load = load
        self.used: set[str] = set()

    def make(self, path: str, metadata: Any = None) -> dict[str, Any]:
        self.contents[path] = {}
        return self.contents[path]  # type: ignore[no-any-return]

    def get(self, path: str) -> dict[str, Any]:
        self.used.add(path)
        return self._load(path) if self._load is not None else {}

    def has_path(self, path: str) -> bool:
        return self._load is not None and self._load(path, probe=True)

    def close(self) -> None:
        pass


def _array(value: Any) -> tuple[np.ndarray, tf.DType]:
    """numpy data and TensorFlow dtype of whatever a layer put into its store (a variable, a
    tensor, a numpy array or scalar, a Python value)."""
    if hasattr(value, "numpy") and not isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value.numpy()), tf.as_dtype(value.dtype)
    array = np.asarray(value)
    if array.dtype.kind in "OSU":  # text: TensorFlow's string type
        tensor = tf.convert_to_tensor(array)
        return np.asarray(tensor.numpy()), tensor.dtype
    return array, tf.as_dtype(array.dtype)


def save_state(model: Any, writer: Any) -> dict[str, Any]:
    """Run Keras' save walk; ``{"state": [...], "assets": [...]}`` for the entry's meta, with
    ``"vocabularies"`` and ``"rng"`` when the model has vocabulary layers or random state."""
    store = _VariableStore()
    assets = saving_lib.DiskIOStore("assets", mode="w")
    lookups = _lookup_layers(model)
    try:
        with _vocabularies_kept_apart(lookups):
            saving_lib._save_state(model, store, assets, "", set())
        state = []
        for path, values in store.contents.items():
            if not values:
                continue
            arrays = {}
            for key, value in values.items():
                array, dtype = _array(value)
                arrays[str(key)] = array_to_json(array, dtype, writer, member=True)
            state.append({"path": path, "vars": arrays})
        out: dict[str, Any] = {"state": state,
                               "assets": _assets_out(Path(assets.working_dir), writer)}
    finally:
        assets.close()
    if lookups:
        out["vocabularies"] = [_vocabulary_out(layer, writer) for layer in lookups]
    rng = [array_to_json(*_array(v), writer) for v in rng_variables(model)]
    if rng:
        out["rng"] = rng
    return out


def rng_variables(model: Any) -> list[Any]:
    """The model's random state beyond its weights (dropout's seed generators), in a fixed
    order."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def restore_rng(model: Any, arrays: Any) -> None:
    """Set the model's :func:`rng_variables` to ``arrays`` (numpy arrays, in their order)."""
    variables = rng_variables(model)
    if not isinstance(arrays, list) or len(arrays) != len(variables):
        got = len(arrays) if isinstance(arrays, list) else "no"
        raise FormatError(f"the file holds {got} random-state arrays; the model has "
                          f"{len(variables)} (was the model's class changed since it was "
                          "saved?)")
    for var, array in zip(variables, arrays, strict=True):
        if tuple(np.shape(array)) != tuple(var.shape):
            raise FormatError(f"random state {var.path!r}: the file holds shape "
                              f"{np.shape(array)}, the model has {tuple(var.shape)}")
        var.assign(array)


def _lookup_layers(model: Any, every: bool = True) -> list[Any]:
    """The model's vocabulary layers (``StringLookup``, ``IntegerLookup``, a
    ``TextVectorization``'s lookup), in a fixed order: every one (dryml stores each one's
    vocabulary: one given to the constructor and then replaced by ``set_vocabulary`` came back
    with the constructor's, its config never being updated), or, ``every=False``, those whose
    vocabulary Keras keeps as an asset file (adapted or set, none given in the config), which
    is what files written before stored."""
    return [layer for layer in _layers(model) if isinstance(layer, IndexLookup)
            and (every or layer.input_vocabulary is None)]


@contextlib.contextmanager
def _vocabularies_kept_apart(layers: list[Any]) -> Iterator[None]:
    """While Keras' walk runs, ``layers`` look to it as if their vocabulary came with their
    config (it then neither writes nor reads their asset file): dryml stores it itself."""
    kept = [layer for layer in layers if layer.input_vocabulary is None]
    for layer in kept:
        layer.input_vocabulary = "kept by dryml"
    try:
        yield
    finally:
        for layer in kept:
            layer.input_vocabulary = None


def _strings(layer: Any) -> bool:
    return bool(tf.as_dtype(layer.vocabulary_dtype) == tf.string)


def _vocabulary_out(layer: Any, writer: Any) -> dict[str, Any]:
    tokens = layer.get_vocabulary(include_special_tokens=True)
    values = [str(t) for t in tokens] if _strings(layer) else [int(t) for t in tokens]
    return {"class": type(layer).__name__,
            "member": writer.add_bytes(json.dumps(values).encode())}


def _in_encoding(layer: Any, tokens: list[Any]) -> Any:
    """The tokens as the layer compares them: ``get_vocabulary`` decodes them with the
    layer's ``encoding`` and ``set_vocabulary`` encodes text as UTF-8, so a latin-1 layer's
    "été" was looked up as other bytes and fell out of the vocabulary: given as bytes in the
    layer's own encoding, every token keeps its id."""
    encoding = getattr(layer, "encoding", "utf-8") if _strings(layer) else "utf-8"
    try:
        if codecs.lookup(encoding).name == "utf-8":
            return tokens
        specials = {getattr(layer, "oov_token", None), getattr(layer, "mask_token", None)}
        return np.array([t if t in specials else t.encode(encoding) for t in tokens],
                        dtype=object)  # the special tokens as text, as Keras finds them
    except (LookupError, UnicodeError) as exc:
        raise FormatError(f"the vocabulary of {layer.name!r} cannot be encoded as its "
                          f"encoding {encoding!r} ({exc})") from None


def _vocabulary_in(layer: Any, entry: Any, reader: Any) -> None:
    """Set ``layer``'s vocabulary (and a tf-idf layer's idf weights, restored with its
    variables) from the entry :func:`_vocabulary_out` wrote, as ``load_assets`` does."""
    name = type(layer).__name__
    if not (isinstance(entry, dict) and entry.get("class") == name
            and isinstance(entry.get("member"), str)):
        raise FormatError(f"a Keras vocabulary entry must name its member and the layer's "
                          f"class ({name})")
    try:
        tokens = json.loads(reader.get_bytes(entry["member"]))
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"the vocabulary of {layer.name!r} is not a JSON list ({exc})") from None
    kind = str if _strings(layer) else int
    if not isinstance(tokens, list) or not all(type(t) is kind for t in tokens):
        raise FormatError(f"the vocabulary of {layer.name!r} must be a list of "
                          f"{kind.__name__} tokens")
    if not layer.get_vocabulary(include_special_tokens=False) and tokens == (
            layer.get_vocabulary(include_special_tokens=True)):
        return  # never adapted when saved, as rebuilt (Keras refuses an empty vocabulary)
    idf = layer.idf_weights_const.numpy() if layer.output_mode == "tf_idf" else None
    try:
        layer.set_vocabulary(_in_encoding(layer, tokens), idf_weights=idf)
    except (ValueError, TypeError, OverflowError, tf.errors.OpError) as exc:
        raise FormatError(f"Keras refused the vocabulary of {layer.name!r}: {exc}") from None


def _assets_out(root: Path, writer: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            file = Path(dirpath, name)
            rel = file.relative_to(root).as_posix()
            if file.is_symlink() or not file.is_file():
                raise SerializationError(f"a Keras layer wrote {rel!r} into its assets, which "
                                         "is not a plain file; dryml stores only files")
            _check_asset_path(rel, SerializationError)
            data = file.read_bytes()
            total += len(data)
            if len(out) >= MAX_ASSET_FILES or total > MAX_ASSET_BYTES:
                raise SerializationError(
                    f"the model's assets exceed dryml-tf's bounds ({MAX_ASSET_FILES} files, "
                    f"{MAX_ASSET_BYTES} bytes): raise dryml_tf._keras_state.MAX_ASSET_FILES/"
                    "MAX_ASSET_BYTES in both the saving and the loading process")
            out.append({"path": rel, "member": writer.add_bytes(data)})
    return sorted(out, key=lambda a: str(a["path"]))


def _check_asset_path(rel: Any, error: type[Exception]) -> list[str]:
    parts = rel.split("/") if isinstance(rel, str) else []
    if not parts or len(parts) > _MAX_DEPTH or not all(
            _PART.match(p) and p not in (".", "..") for p in parts):
        raise error(f"invalid Keras asset path {rel!r}: asset paths are relative paths of "
                    "letters, digits, '_', '-' and '.'")
    return parts


def _write_assets(entries: Any, reader: Any, root: Path) -> None:
    if not isinstance(entries, list) or len(entries) > MAX_ASSET_FILES:
        raise FormatError(f"a Keras model's assets must be a list of at most "
                          f"{MAX_ASSET_FILES} files")
    total = 0
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("member"), str):
            raise FormatError("a Keras asset entry must name its path and member")
        parts = _check_asset_path(entry.get("path"), FormatError)
        data = reader.get_bytes(entry["member"])
        total += len(data)
        if total > MAX_ASSET_BYTES:
            raise FormatError(f"the model's assets exceed {MAX_ASSET_BYTES} bytes (raise "
                              "dryml_tf._keras_state.MAX_ASSET_BYTES if you trust the file)")
        target = root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(target, "xb") as f:  # a path listed twice is an error, not an overwrite
                f.write(data)
        except (FileExistsError, IsADirectoryError, NotADirectoryError):
            raise FormatError(f"the Keras asset {entry['path']!r} is listed twice or "
                              "clashes with a directory") from None


def _state_loader(entries: Any, reader: Any) -> Any:
    if not isinstance(entries, list):
        raise FormatError("a Keras model's state must be a list of saveables")
    by_path: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                and isinstance(entry.get("vars"), dict)):
            raise FormatError("a Keras state entry must have a 'path' and 'vars'")
        if entry["path"] in by_path:
            raise FormatError(f"the Keras state lists {entry['path']!r} twice")
        by_path[entry["path"]] = entry["vars"]

    def load(path: str, probe: bool = False) -> Any:
        if probe:
            return path in by_path or any(p.startswith(path + "/") for p in by_path)
        return {key: array_from_json(value, reader)[0]
                for key, value in by_path.get(path, {}).items()}

    return by_path, load


def load_state(model: Any, meta: dict[str, Any], reader: Any) -> None:
    """Run Keras' load walk over the recorded state and assets, set the vocabularies and the
    random state, then finalize layers."""
    by_path, load = _state_loader(meta.get("state"), reader)
    vocabularies = meta.get("vocabularies")
    lookups = _lookup_layers(model) if vocabularies is not None else []
    if isinstance(vocabularies, list) and len(vocabularies) != len(lookups):
        lookups = _lookup_layers(model, every=False)  # a file written before: adapted ones
    if vocabularies is not None and (not isinstance(vocabularies, list)
                                     or len(vocabularies) != len(lookups)):
        got = len(vocabularies) if isinstance(vocabularies, list) else "no"
        raise FormatError(f"the file holds {got} vocabularies; the rebuilt model has "
                          f"{len(lookups)} vocabulary layers")
    store = _VariableStore(load)
    failed: set[int] = set()
    errors: dict[int, Any] = {}
    extra = {}
    if "failed_saveables" in inspect.signature(saving_lib._load_state).parameters:
        extra = {"failed_saveables": failed, "error_msgs": errors}
    with tempfile.TemporaryDirectory(prefix="dryml-keras-assets-") as tmp:
        assets = None
        if meta.get("assets"):
            _write_assets(meta["assets"], reader, Path(tmp))
            assets = saving_lib.DiskIOStore(tmp, mode="r")
        try:
            with _vocabularies_kept_apart(lookups):
                saving_lib._load_state(model, store, assets, "", False, set(), **extra)
        except (ValueError, TypeError, KeyError, OSError, tf.errors.OpError) as exc:
            raise FormatError(f"Keras could not restore the model's state: {exc}") from None
    if errors:
        what = "; ".join(f"{getattr(obj, 'name', obj)!s}: {exc}" for obj, exc in
                         errors.values())
        raise FormatError(f"Keras could not restore the model's state ({what})")
    missing = sorted(set(by_path) - store.used)
    if missing:
        raise FormatError(f"the file holds Keras state for {missing} that the rebuilt model "
                          "does not have (was the model's class changed since it was saved?)")
    for layer, entry in zip(lookups, vocabularies or [], strict=True):
        _vocabulary_in(layer, entry, reader)
    if "rng" in meta:
        entries = meta["rng"]
        restore_rng(model, [array_from_json(e, reader)[0] for e in entries]
                    if isinstance(entries, list) else entries)
    finalize_layers(model)


def finalize_layers(model: Any) -> None:
    """``finalize_state()`` on every layer (nested models too) that holds variables, as Keras'
    loaders do after restoring them (an adapted ``Normalization`` derives its mean and
    variance there)."""
    for layer in _layers(model):
        if callable(getattr(layer, "finalize_state", None)) and layer.weights:
            layer.finalize_state()


def _layers(model: Any) -> list[Any]:
    """The model and every layer in it (nested models too), each once, in a fixed order."""
    flatten = getattr(model, "_flatten_layers", None)
    return list(flatten(include_self=True, recursive=True)) if flatten else [model]
