"""Trainable and component records of dryml-xgboost (no framework import here)."""

from __future__ import annotations

from dryml.records import TrainerRecord

TRAINERS: list[TrainerRecord] = [
    TrainerRecord("xgboost.trainable", framework="xgboost",
                  impl="dryml_xgboost.models:XGBoostTrainable", package="dryml-xgboost"),
]
