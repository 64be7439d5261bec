"""Serializer and argument-codec records of dryml-torch (no framework import here).

``store.put`` takes tensors, ``nn.Module`` s (their state dict), optimizers and LR schedulers
(their state dict); Object constructors take tensors, ``torch.dtype``, ``torch.device`` and
``torch.Size``. See ``dryml_torch._serializers`` for how to restore module weights.
"""

from __future__ import annotations

from dryml.records import ArgCodecRecord, SerializerRecord

PACKAGE = "dryml-torch"

SERIALIZERS: list[SerializerRecord] = [
    SerializerRecord("torch.Tensor", types=["torch:Tensor"],
                     impl="dryml_torch._serializers:TENSOR", package=PACKAGE),
    SerializerRecord("torch.nn.Module", types=["torch.nn.modules.module:Module"],
                     impl="dryml_torch._serializers:MODULE", package=PACKAGE),
    SerializerRecord("torch.optim.Optimizer",
                     types=["torch.optim.optimizer:Optimizer",
                            "torch.optim.lr_scheduler:LRScheduler"],
                     impl="dryml_torch._serializers:STATE_DICT", package=PACKAGE),
]
ARG_CODECS: list[ArgCodecRecord] = [
    ArgCodecRecord("torch.Tensor", types=["torch:Tensor"],
                   impl="dryml_torch._codecs:TENSOR", package=PACKAGE),
    ArgCodecRecord("torch.dtype", types=["torch:dtype"],
                   impl="dryml_torch._codecs:DTYPE", package=PACKAGE),
    ArgCodecRecord("torch.device", types=["torch:device"],
                   impl="dryml_torch._codecs:DEVICE", package=PACKAGE),
    ArgCodecRecord("torch.Size", types=["torch:Size"],
                   impl="dryml_torch._codecs:SIZE", package=PACKAGE),
]
#: Framework modules whose classes may be passed as constructor arguments in files.
#: Layers, losses and containers (``torch.nn.modules``) and optimizers / LR schedulers
#: (``torch.optim``) only allocate tensors when built. Not the whole of ``torch``: it holds
#: classes that read pickles or run code (``torch.package``, ``torch.jit``, ``torch.hub``),
#: join process groups (``torch.distributed``, ``torch.nn.parallel``) or compile extensions.
TRUSTED_MODULES: list[str] = ["torch.nn.modules", "torch.optim"]
