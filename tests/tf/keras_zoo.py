"""The Keras zoo: cases built from Keras' own catalogue, saved here, loaded in one fresh process.

Cases: every layer in ``keras.layers`` from Keras' preprocessing package that has state (an
``adapt`` method or a ``vocabulary`` argument), adapted, in each of its output modes, plus one
built from a given vocabulary; a Normalization inside nested models; and applications built
with ``weights=None`` (their Normalization layers adapted, as a user would). Each case is
saved three ways (dryml, Keras' native ``.keras``, pickle); :data:`CHILD` loads them all in a
single fresh interpreter that has imported only dryml, recording which frameworks each dryml
load imported, and writes every output for the parent to compare bit for bit.

Importing this module imports numpy and dryml only (the child imports it to find ``Holder``
and the inputs); TensorFlow is imported by the functions that build models.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np

from dryml import Object

__all__ = ["CHILD", "INPUT_KINDS", "Holder", "case_input", "cases",
           "stateful_preprocessing_layers"]

#: The kind of data each stateful preprocessing layer adapts on. A layer Keras adds to the
#: catalogue that is missing here fails the zoo test, naming it.
INPUT_KINDS = {"Normalization": "float", "Discretization": "float", "IntegerLookup": "int",
               "StringLookup": "str", "TextVectorization": "text"}
#: Output modes every vocabulary layer offers.
LOOKUP_MODES = ("int", "multi_hot", "count", "tf_idf")
WORDS = np.array(["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away", "sun",
                  "hot", "cold", "tea", "milk"])


class Holder(Object):
    """Keeps one Keras model in the store."""

    def __init__(self, label: str = "") -> None:
        self.model: Any = None

    def save_object_imp(self, store: Any) -> None:
        store.put("model", self.model)

    def load_object_imp(self, store: Any) -> None:
        self.model = store.get("model")


def case_input(kind: str, adapt: bool = False) -> np.ndarray:
    """Deterministic data of one kind (``adapt=True``: the data layers adapt on)."""
    rng = np.random.default_rng(1 if adapt else 2)
    n = 96 if adapt else 16
    if kind == "float":
        return rng.normal([3.0, -20.0, 100.0], [1.0, 5.0, 30.0], size=(n, 3)).astype("float32")
    if kind == "int":
        return rng.zipf(1.6, size=(n, 1)).clip(0, 60).astype("int64") + (0 if adapt else 3)
    if kind == "str":
        words = np.append(WORDS, [] if adapt else ["unseen", "words"])
        return words[rng.zipf(1.5, size=(n, 1)).clip(1, len(words)) - 1]
    if kind == "text":
        rows = [" ".join(WORDS[rng.zipf(1.4, size=rng.integers(2, 9)).clip(1, 15) - 1])
                for _ in range(n)]
        return np.array(rows if adapt else [*rows[:-1], "zebra unseen the cat"])[:, None]
    if kind == "image":
        return rng.uniform(0, 255, size=(4 if adapt else 2, 32, 32, 3)).astype("float32")
    raise ValueError(kind)


def stateful_preprocessing_layers() -> list[str]:
    """Layers of ``keras.layers`` from Keras' preprocessing package that have ``adapt`` or a
    vocabulary argument (Keras' catalogue, not a hand-kept list)."""
    import keras

    out = []
    for name in sorted(dir(keras.layers)):
        cls = getattr(keras.layers, name)
        if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)
                and ".preprocessing." in cls.__module__):
            continue
        params = inspect.signature(cls.__init__).parameters
        if callable(getattr(cls, "adapt", None)) or "vocabulary" in params:
            out.append(name)
    return out


def _dtype(kind: str) -> str:
    return {"float": "float32", "int": "int64", "str": "string", "text": "string"}[kind]


def _one_layer(name: str, kind: str, **kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        import keras

        layer = getattr(keras.layers, name)(**kwargs)
        if "vocabulary" not in kwargs:
            layer.adapt(case_input(kind, adapt=True))
        shape = (3,) if kind == "float" else (1,)
        return keras.Sequential([keras.Input(shape, dtype=_dtype(kind)), layer])
    return build


def _nested() -> Any:
    import keras

    norm = keras.layers.Normalization()
    norm.adapt(case_input("float", adapt=True))
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((3,)), norm, keras.layers.Dense(4)])
    inp = keras.Input((3,))
    middle = keras.Model(inp, keras.layers.Dense(2)(inner(inp)))
    inp2 = keras.Input((3,))
    return keras.Model(inp2, middle(inp2))


def _application(name: str, **kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        import keras

        keras.utils.set_random_seed(0)
        model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3),
                                                  **kwargs)
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.Normalization):
                layer.adapt(case_input("image", adapt=True))
        return model
    return build


def cases() -> dict[str, tuple[Callable[[], Any], str]]:
    """Case name -> (build a model, input kind). Fails naming any stateful preprocessing
    layer that has no input kind here."""
    out: dict[str, tuple[Callable[[], Any], str]] = {}
    for name in stateful_preprocessing_layers():
        if name not in INPUT_KINDS:
            raise AssertionError(f"Keras has a stateful preprocessing layer {name!r} the zoo "
                                 "does not know: add its input kind to INPUT_KINDS")
        kind = INPUT_KINDS[name]
        import keras

        params = inspect.signature(getattr(keras.layers, name).__init__).parameters
        if "vocabulary" in params:
            for mode in LOOKUP_MODES:
                out[f"{name}-{mode}"] = (_one_layer(name, kind, output_mode=mode), kind)
            vocab = [1, 2, 3, 5, 8] if kind == "int" else ["the", "cat", "sat", "dog"]
            out[f"{name}-vocabulary"] = (_one_layer(name, kind, vocabulary=vocab), kind)
        elif name == "Discretization":
            out[name] = (_one_layer(name, kind, num_bins=5), kind)
        else:
            out[name] = (_one_layer(name, kind), kind)
    out["Normalization-nested-models"] = (_nested, "float")
    out["MobileNetV3Small"] = (_application("MobileNetV3Small"), "image")
    out["EfficientNetB0"] = (_application("EfficientNetB0"), "image")
    return out


def run(model: Any, kind: str) -> np.ndarray:
    """The model's output on the case's input, as numpy."""
    return np.asarray(model(case_input(kind), training=False))


#: The fresh interpreter: argv[1] is a JSON spec {"path", "cases": {name: kind}, "dir"}.
CHILD = textwrap.dedent("""
    import json, pickle, sys
    spec = json.loads(sys.argv[1])
    sys.path[:0] = spec["path"]
    WATCH = {"tensorflow", "keras", "torch", "sklearn", "xgboost", "jax"}

    def frameworks():
        return {m.split(".")[0] for m in list(sys.modules)} & WATCH

    import numpy as np
    from dryml import load_object
    import keras_zoo
    result = {"before": sorted(frameworks()), "dryml": {}, "keras": {}, "pickle": {}}

    def attempt(how, name, kind, load):
        seen = frameworks()
        try:
            out = keras_zoo.run(load(), kind)
            np.save(f"{spec['dir']}/{name}.{how}.npy", out, allow_pickle=False)
            got = {"ok": True}
        except BaseException as exc:
            got = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        got["imported"] = sorted(frameworks() - seen)
        result[how][name] = got

    d = spec["dir"]
    for name, kind in spec["cases"].items():
        attempt("dryml", name, kind,
                lambda: load_object(f"{d}/{name}.dry", trust=["keras_zoo"]).model)
    result["after_dryml"] = sorted(frameworks())
    # `import keras` itself imports scikit-learn when it is installed (keras.src.wrappers)
    wrappers = sys.modules.get("keras.src.wrappers.utils")
    result["keras_imports_sklearn"] = getattr(wrappers, "sklearn", None) is not None
    if spec["others"]:
        import keras
        for name, kind in spec["cases"].items():
            attempt("keras", name, kind, lambda: keras.saving.load_model(f"{d}/{name}.keras"))
            attempt("pickle", name, kind,
                    lambda: pickle.loads(open(f"{d}/{name}.pkl", "rb").read()))
    with open(f"{d}/result.json", "w") as f:
        json.dump(result, f)
""")
