"""Trainable and component records of dryml-torch (no framework import here)."""

from __future__ import annotations

from dryml.records import TrainerRecord

TRAINERS: list[TrainerRecord] = []
