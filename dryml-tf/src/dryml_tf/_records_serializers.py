"""Serializer and argument-codec records of dryml-tf (no framework import here)."""

from __future__ import annotations

from dryml.records import ArgCodecRecord, SerializerRecord

_PKG = "dryml-tf"
_TENSOR = "tensorflow.python.framework.tensor:Tensor"
_VARIABLE = "tensorflow.python.ops.variables:Variable"

SERIALIZERS: list[SerializerRecord] = [
    SerializerRecord("keras.model", types=["keras.src.models.model:Model"],
                     impl="dryml_tf._serializers:KERAS_MODEL", package=_PKG),
    # a layer that is not a model: refused with what to put instead (else "cannot be recorded")
    SerializerRecord("keras.layer", types=["keras.src.layers.layer:Layer"],
                     impl="dryml_tf._serializers:KERAS_LAYER", package=_PKG),
    SerializerRecord("tf.value", types=[_TENSOR, _VARIABLE],
                     impl="dryml_tf._serializers:TF_VALUE", package=_PKG),
]
ARG_CODECS: list[ArgCodecRecord] = [
    ArgCodecRecord("tf.tensor", types=[_TENSOR], impl="dryml_tf._codecs:TENSOR", package=_PKG),
    ArgCodecRecord("tf.variable", types=[_VARIABLE], impl="dryml_tf._codecs:VARIABLE",
                   package=_PKG),
    ArgCodecRecord("tf.dtype", types=["tensorflow.python.framework.dtypes:DType"],
                   impl="dryml_tf._codecs:DTYPE", package=_PKG),
]
#: Framework modules whose classes may be passed as constructor arguments in files: Keras'
#: building blocks (a class is inert until the Object builds it with its own arguments).
TRUSTED_MODULES: list[str] = [
    f"keras.src.{name}" for name in (
        "layers", "optimizers", "losses", "metrics", "initializers", "regularizers",
        "constraints", "models",
    )
]
