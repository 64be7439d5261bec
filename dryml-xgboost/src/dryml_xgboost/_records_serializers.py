"""Serializer and argument-codec records of dryml-xgboost (no framework import here).

``store.put`` takes ``xgboost.Booster`` and the scikit-learn wrappers (``XGBClassifier``,
``XGBRegressor``, ``XGBRanker``, ``XGBRF*``: every ``XGBModel``), written as XGBoost's own
UBJSON model; ``store.get`` returns an equivalent object.
"""

from __future__ import annotations

from dryml.records import ArgCodecRecord, SerializerRecord

PACKAGE = "dryml-xgboost"

SERIALIZERS: list[SerializerRecord] = [
    SerializerRecord("xgboost.Booster", types=["xgboost.core:Booster"],
                     impl="dryml_xgboost._serializers:BOOSTER", package=PACKAGE),
    SerializerRecord("xgboost.XGBModel", types=["xgboost.sklearn:XGBModel"],
                     impl="dryml_xgboost._serializers:SKLEARN_MODEL", package=PACKAGE),
]
ARG_CODECS: list[ArgCodecRecord] = []
#: Framework modules whose classes may be passed as constructor arguments in files: the
#: scikit-learn wrappers (``xgboost.XGBClassifier``...), whose ``__init__`` only stores
#: parameters. Not ``xgboost.callback`` (checkpoint callbacks write files) nor the rest.
TRUSTED_MODULES: list[str] = ["xgboost.sklearn"]
