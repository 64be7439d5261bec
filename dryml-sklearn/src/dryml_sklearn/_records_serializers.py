"""Serializer and argument-codec records of dryml-sklearn (no framework import here)."""

from __future__ import annotations

from dryml.records import ArgCodecRecord, SerializerRecord

SERIALIZERS: list[SerializerRecord] = [
    SerializerRecord("sklearn.estimator", types=["sklearn.base:BaseEstimator"],
                     impl="dryml_sklearn._serializers:ESTIMATOR", package="dryml-sklearn"),
]
ARG_CODECS: list[ArgCodecRecord] = [
    ArgCodecRecord("sklearn.estimator", types=["sklearn.base:BaseEstimator"],
                   impl="dryml_sklearn._codecs:ESTIMATOR_ARG", package="dryml-sklearn"),
]
#: Framework modules whose classes may be passed as constructor arguments in files: the
#: estimator families (an estimator class is inert until the Object builds it with its own
#: arguments). Not `sklearn` as a whole: its utilities and dataset fetchers are no such thing.
TRUSTED_MODULES: list[str] = [
    f"sklearn.{name}" for name in (
        "calibration", "cluster", "compose", "covariance", "cross_decomposition",
        "decomposition", "discriminant_analysis", "dummy", "ensemble", "feature_selection",
        "gaussian_process", "impute", "isotonic", "kernel_approximation", "kernel_ridge",
        "linear_model", "manifold", "mixture", "multiclass", "multioutput", "naive_bayes",
        "neighbors", "neural_network", "pipeline", "preprocessing", "random_projection",
        "semi_supervised", "svm", "tree",
    )
]
