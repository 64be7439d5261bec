"""``store.put`` serializers of dryml-xgboost: Boosters and the scikit-learn wrappers.

Trees go into the file as XGBoost's own UBJSON model (``Booster.save_raw("ubj")``), one
binary member, which carries the best iteration and score and the feature names; the
booster's training configuration (``save_config``) and, for ``XGBClassifier`` /
``XGBRegressor`` and the other ``XGBModel`` classes, the constructor parameters
(``get_params()``; a numpy generator ``random_state`` as its state:
:mod:`dryml_xgboost._generators`) and ``evals_result_`` are JSON in the manifest.
``store.get`` returns a new, equivalent object whose predictions are bit-identical. Nothing
is pickled, and no byte of a file reaches XGBoost's parsers before
:mod:`dryml_xgboost._validate` has checked the model and configuration (XGBoost's loader
trusts every index it reads).
"""

from __future__ import annotations

import base64
import copy
import ctypes
import functools
import importlib.metadata
import math
import warnings
import weakref
from typing import Any

import numpy as np

try:
    import xgboost
except ImportError as _exc:  # the backend is installed without its framework
    from dryml.errors import BackendUnavailableError

    raise BackendUnavailableError(
        f"dryml-xgboost needs xgboost, which cannot be imported ({_exc}): pip install xgboost"
    ) from _exc

from dryml.backend import TrustPolicy
from dryml.errors import (
    BackendUnavailableError,
    DrymlVersionWarning,
    FormatError,
    SerializationError,
)
from dryml_xgboost import _generators
from dryml_xgboost._validate import check_model_and_config

__all__ = ["BOOSTER", "SKLEARN_MODEL"]

PACKAGE = "dryml-xgboost"
_TAG = "~"
_checked: weakref.WeakSet[Any] = weakref.WeakSet()
# Parameters XGBModel.load_model overwrites from the booster; the user's values come back.
_RESET_AFTER_LOAD = ("objective", "booster", "base_score", "feature_types", "enable_categorical")


def _version() -> str:
    return str(xgboost.__version__)


@functools.cache
def _plugin_version() -> str:
    """This package's installed version (a metadata lookup costs ~1 ms: done once)."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _note_versions(writer: Any) -> None:
    writer.record_version(PACKAGE, _plugin_version(), framework=("xgboost", _version()))


def _check_versions(reader: Any) -> None:
    try:
        if reader in _checked:
            return
        _checked.add(reader)
    except TypeError:
        pass
    written = reader.framework_version("xgboost")
    if written and written.split(".")[0] != _version().split(".")[0]:
        warnings.warn(
            f"the file was written with xgboost {written}; xgboost {_version()} is installed. "
            "XGBoost reads models of older versions; if loading fails, install "
            f"xgboost=={written}.", DrymlVersionWarning, stacklevel=4)


def _dump_booster(booster: xgboost.Booster, writer: Any) -> dict[str, Any]:
    config = booster.save_config()
    if '"multi_output_tree"' in config:
        raise SerializationError(
            "XGBoost multi-target trees (multi_strategy='multi_output_tree', experimental in "
            "XGBoost) cannot be saved: dryml validates every model before XGBoost loads it "
            "and does not know their layout; use multi_strategy='one_output_per_tree'")
    # Stored as XGBoost writes it: zstd would shrink UBJSON to about a third but cost more
    # than XGBoost's own save (docs/backends.md, "Speed"); saving runs at save_model's speed.
    # The view of XGBoost's own buffer is written before add_bytes returns (no copy), and
    # nothing calls XGBoost in between.
    return {"format": "ubj", "model": writer.add_bytes(_ubj_view(booster), compress=False),
            "config": config}


def _ubj_view(booster: xgboost.Booster) -> bytes | memoryview:
    """``booster.save_raw("ubj")`` without a copy: save_raw zero-fills a bytearray and copies
    into it (two passes over the model, about a tenth of save_model's time); XGBoost's C
    call, where it is there, returns its own buffer, which this views. The view is valid
    until the next XGBoost call on this booster and thread: write it at once."""
    lib = getattr(xgboost.core, "_LIB", None)
    call = getattr(lib, "XGBoosterSaveModelToBuffer", None)
    args = getattr(xgboost.core, "make_jcargs", None)
    if call is None or args is None:
        return bytes(booster.save_raw(raw_format="ubj"))
    length = xgboost.core.c_bst_ulong()
    pointer = ctypes.POINTER(ctypes.c_char)()
    xgboost.core._check_call(call(booster.handle, args(format="ubj"), ctypes.byref(length),
                                  ctypes.byref(pointer)))
    if not length.value:
        return b""
    buffer = (ctypes.c_char * length.value).from_address(ctypes.addressof(pointer.contents))
    return memoryview(buffer).cast("B")


def _checked_model(meta: dict[str, Any], reader: Any) -> tuple[bytes, str | None]:
    """The model member and configuration, validated before XGBoost's parsers see them."""
    if meta.get("format") != "ubj" or not isinstance(meta.get("model"), str):
        raise FormatError("an XGBoost entry must name a 'ubj' model member")
    raw = reader.get_bytes(meta["model"])
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise FormatError("the XGBoost model member must hold bytes")
    raw = bytes(raw)
    config = meta.get("config")
    if config is not None and not isinstance(config, str):
        raise FormatError("an XGBoost entry's config must be a JSON string")
    check_model_and_config(raw, config)
    return raw, config


def _load_raw(booster: xgboost.Booster, raw: bytes) -> None:
    """``booster.load_model(bytearray(raw))`` without the copy (XGBoost only reads the
    buffer), through the C call load_model makes where it is there."""
    call = getattr(getattr(xgboost.core, "_LIB", None), "XGBoosterLoadModelFromBuffer", None)
    if call is None:
        booster.load_model(bytearray(raw))
        return
    xgboost.core._check_call(call(booster.handle, ctypes.c_char_p(raw),
                                  xgboost.core.c_bst_ulong(len(raw))))


def _load_checked(target: Any, raw: bytes, config: str | None) -> None:
    """Hand validated bytes to XGBoost; any failure of its loaders is a FormatError."""
    try:
        if isinstance(target, xgboost.Booster):
            _load_raw(target, raw)
        else:
            target.load_model(bytearray(raw))
        if config is not None:
            booster = target if isinstance(target, xgboost.Booster) else target.get_booster()
            booster.load_config(config)
    except ImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - XGBoost's Python layer raises many kinds
        raise FormatError(f"XGBoost could not read the model in the file: {exc}") from None


def _load_booster_into(booster: xgboost.Booster, meta: dict[str, Any], reader: Any) -> None:
    raw, config = _checked_model(meta, reader)
    _load_checked(booster, raw, config)


class BoosterSerializer:
    """``xgboost.Booster``: UBJSON model plus training configuration."""

    def dump(self, value: xgboost.Booster, writer: Any) -> Any:
        _note_versions(writer)
        return _dump_booster(value, writer)

    def load(self, meta: Any, reader: Any) -> xgboost.Booster:
        if not isinstance(meta, dict):
            raise FormatError("an XGBoost Booster entry must be an object")
        _check_versions(reader)
        booster = xgboost.Booster()
        _load_booster_into(booster, meta, reader)
        return booster


def _model_class(path: Any, reader: Any) -> type[xgboost.XGBModel]:
    """The ``XGBModel`` subclass a file names, resolved by the loading call's trust policy.

    Only classes from modules decided before anything is imported resolve (``xgboost.sklearn``,
    which this plugin declares, and the caller's ``trust=``); a module the file names is never
    imported because it named it (``xgboost.testing`` unpickles caches from the working
    directory when imported).
    """
    policy = getattr(reader, "trust", None) or TrustPolicy()
    cls = policy.resolve_named_class(path, base=xgboost.XGBModel)
    return cls  # type: ignore[no-any-return]


class SklearnModelSerializer:
    """``XGBClassifier``, ``XGBRegressor`` and other ``XGBModel`` s, fitted or not."""

    def dump(self, value: xgboost.XGBModel, writer: Any) -> Any:
        _note_versions(writer)
        meta: dict[str, Any] = {
            "class": f"{type(value).__module__}:{type(value).__qualname__}",
            "params": _encode(_params(value), "params"),
            "fitted": bool(value.__sklearn_is_fitted__()),
        }
        if meta["fitted"]:
            meta.update(_dump_booster(value.get_booster(), writer))
            if isinstance(getattr(value, "n_classes_", None), (int, np.integer)):
                # load_model reads it from the booster, where one class reads as two
                meta["n_classes"] = int(value.n_classes_)
            if getattr(value, "evals_result_", None) is not None:
                meta["evals_result"] = _encode(value.evals_result_, "evals_result_")
        return meta

    def load(self, meta: Any, reader: Any) -> xgboost.XGBModel:
        if not isinstance(meta, dict) or not isinstance(meta.get("params"), dict):
            raise FormatError("an XGBoost model entry must hold its params")
        _check_versions(reader)
        cls = _model_class(meta.get("class"), reader)
        try:
            return self._build(cls, meta, reader)
        except ImportError as exc:
            raise BackendUnavailableError(
                f"loading an {cls.__name__} needs scikit-learn, which XGBoost's scikit-learn "
                f"interface uses ({exc}): pip install 'dryml-xgboost[sklearn]'") from exc

    @staticmethod
    def _build(cls: type[xgboost.XGBModel], meta: dict[str, Any], reader: Any
               ) -> xgboost.XGBModel:
        params = _decode(meta["params"])
        model = cls(**params)
        if meta.get("fitted") is True:
            raw, config = _checked_model(meta, reader)
            _load_checked(model, raw, config)
            for key in _RESET_AFTER_LOAD:
                if key in params:
                    setattr(model, key, params[key])
            if "evals_result" in meta:
                model.evals_result_ = _decode(meta["evals_result"])
            classes = meta.get("n_classes")
            if classes is not None:
                if type(classes) is not int or not 1 <= classes <= 2 ** 31:
                    raise FormatError(f"an XGBoost model entry's n_classes must be a positive "
                                      f"int, got {classes!r}")
                if classes == 1 and getattr(model, "n_classes_", None) == 2:
                    model.n_classes_ = 1  # fitted on one class: classes_ is [0], not [0, 1]
        return model


def _params(value: xgboost.XGBModel) -> dict[str, Any]:
    """``value.get_params(deep=False)`` with a numpy generator ``random_state`` as it is:
    XGBoost's get_params draws an int from it in its place (advancing the caller's
    generator), so the parameters are read from a shallow copy holding none."""
    random_state = getattr(value, "random_state", None)
    if not isinstance(random_state, np.random.RandomState | np.random.Generator):
        return value.get_params(deep=False)
    shallow = copy.copy(value)
    shallow.random_state = None
    params: dict[str, Any] = shallow.get_params(deep=False)
    params["random_state"] = random_state
    return params


def _encode(value: Any, path: str) -> Any:  # noqa: PLR0911 - one branch per kind
    """Parameters as JSON; callables and other objects are refused with the reason."""
    tp = type(value)
    if value is None or tp in (bool, int, str):
        return value
    if tp is float:
        return value if math.isfinite(value) else {_TAG: "float", "value": repr(value)}
    if isinstance(value, np.generic) and not value.dtype.hasobject:
        return _encode(value.item(), path)
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        data = np.ascontiguousarray(value)
        return {_TAG: "ndarray", "dtype": data.dtype.str, "shape": list(data.shape),
                "b64": base64.b64encode(data.tobytes()).decode("ascii")}
    if tp is list:
        return [_encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.random.RandomState | np.random.Generator):
        tag, state = _generators.state_of(value, path)
        return {_TAG: tag, "state": _encode(state, path)}
    if tp is tuple:
        return {_TAG: "tuple", "items": [_encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        if all(type(k) is str for k in value) and _TAG not in value:
            return {k: _encode(v, f"{path}[{k!r}]") for k, v in value.items()}
        return {_TAG: "dict", "items": [[_encode(k, path), _encode(v, f"{path}[{k!r}]")]
                                        for k, v in value.items()]}
    raise SerializationError(
        f"XGBoost {path}: {tp.__module__}.{tp.__qualname__} values (callbacks, custom "
        "objectives or metrics) cannot be saved safely; set them to None or a name before "
        "saving and pass them again after loading")


def _decode(data: Any) -> Any:  # noqa: PLR0911 - one branch per kind
    tp = type(data)
    if data is None or tp in (bool, int, str, float):
        return data
    if tp is list:
        return [_decode(v) for v in data]
    if tp is not dict:
        raise FormatError(f"unexpected {tp.__name__} in XGBoost parameters")
    kind = data.get(_TAG)
    if kind is None:
        return {k: _decode(v) for k, v in data.items()}
    if kind == "float" and data.get("value") in ("nan", "inf", "-inf"):
        return float(data["value"])
    if kind == "tuple" and type(data.get("items")) is list:
        return tuple(_decode(v) for v in data["items"])
    if kind == "dict" and type(data.get("items")) is list:
        if not all(type(p) is list and len(p) == 2 for p in data["items"]):
            raise FormatError("an XGBoost parameter dict entry must be a [key, value] pair")
        return {_decode(k): _decode(v) for k, v in data["items"]}
    if kind == "ndarray":
        return _decode_array(data)
    if kind in _generators.GENERATORS:
        return _generators.generator_from(kind, _decode(data.get("state")))
    raise FormatError(f"malformed {kind!r} entry in XGBoost parameters")


def _decode_array(data: dict[str, Any]) -> np.ndarray:
    try:
        dtype = np.dtype(str(data["dtype"]))
        shape = tuple(int(d) for d in data["shape"])
        raw = base64.b64decode(str(data["b64"]), validate=True)
        if dtype.hasobject:
            raise ValueError("object arrays need pickle")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"malformed array in XGBoost parameters: {exc}") from None


BOOSTER = BoosterSerializer()
SKLEARN_MODEL = SklearnModelSerializer()
