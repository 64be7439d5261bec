"""Trainable and component records of dryml-xgboost (no framework import here)."""

from __future__ import annotations

from dryml.records import TrainerRecord

TRAINERS: list[TrainerRecord] = []
