"""Trainable and component records of dryml-tf (no framework import here)."""

from __future__ import annotations

from dryml.records import TrainerRecord

_PKG = "dryml-tf"

TRAINERS: list[TrainerRecord] = [
    TrainerRecord(f"tf.{name}", framework="tf", impl=f"dryml_tf.models:{cls}", package=_PKG)
    for name, cls in (("trainable", "KerasTrainable"), ("sequential", "Sequential"),
                      ("network", "Network"), ("optimizer", "Optimizer"), ("loss", "Loss"),
                      ("metric", "Metric"), ("procedure", "KerasProcedure"),
                      ("mixup", "MixupProcedure"),
                      ("gradient_accumulation", "GradientAccumulation"))
]
