"""Trainable and component records of dryml-sklearn (no framework import here)."""

from __future__ import annotations

from dryml.records import TrainerRecord

TRAINERS: list[TrainerRecord] = [
    TrainerRecord("sklearn.estimator", framework="sklearn",
                  impl="dryml_sklearn.models:Estimator", package="dryml-sklearn"),
    TrainerRecord("sklearn.trainable", framework="sklearn",
                  impl="dryml_sklearn.models:SklearnTrainable", package="dryml-sklearn"),
]
