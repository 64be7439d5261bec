"""Trainable and component records of dryml-torch (no framework import here)."""

from __future__ import annotations

from dryml.records import TrainerRecord

PACKAGE = "dryml-torch"

TRAINERS: list[TrainerRecord] = [
    TrainerRecord("torch.trainable", framework="torch",
                  impl="dryml_torch.models:TorchTrainable", package=PACKAGE),
    TrainerRecord("torch.sequential", framework="torch",
                  impl="dryml_torch.models:Sequential", package=PACKAGE),
    TrainerRecord("torch.network", framework="torch",
                  impl="dryml_torch.models:Network", package=PACKAGE),
    TrainerRecord("torch.optimizer", framework="torch",
                  impl="dryml_torch.models:Optimizer", package=PACKAGE),
    TrainerRecord("torch.loss", framework="torch",
                  impl="dryml_torch.models:Loss", package=PACKAGE),
    TrainerRecord("torch.procedure", framework="torch",
                  impl="dryml_torch.models:TorchProcedure", package=PACKAGE),
    TrainerRecord("torch.mixup", framework="torch",
                  impl="dryml_torch.models:MixupProcedure", package=PACKAGE),
    TrainerRecord("torch.gradient_accumulation", framework="torch",
                  impl="dryml_torch.models:GradientAccumulation", package=PACKAGE),
]
