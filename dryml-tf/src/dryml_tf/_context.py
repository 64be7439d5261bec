"""Prepares a worker process for TensorFlow (imports it only in :meth:`prepare`).

The caller has already set ``CUDA_VISIBLE_DEVICES`` to the GPUs granted and the thread
variables to the CPUs granted. Here, before TensorFlow initialises its devices: only this
framework's GPUs visible, a logical-device memory limit for a fractional GPU (TensorFlow never
gives memory back, so the limit is the only cap), memory growth for a whole one, and thread
pools sized to the CPUs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dryml.context import ComputeContext

__all__ = ["CONTEXT", "TFContext"]


class TFContext:
    """The ``tf`` compute context."""

    def environment(self, ctx: ComputeContext) -> dict[str, str]:
        """Variables the worker starts with (read by TensorFlow when it loads)."""
        threads = str(ctx.cpu_threads("tf"))
        return {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1"
                if threads == "1" else "2",
                # TensorFlow's C++ start-up chatter would bury progress bars; the user's
                # own setting wins
                "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}

    def prepare(self, ctx: ComputeContext) -> None:
        """Import TensorFlow and configure its devices before first use."""
        import tensorflow as tf

        threads = ctx.cpu_threads("tf")
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        physical = tf.config.list_physical_devices("GPU")
        mine = [g for g in ctx.local_gpus("tf") if g["ordinal"] < len(physical)]
        tf.config.set_visible_devices([physical[g["ordinal"]] for g in mine], "GPU")
        for gpu in mine:
            device = physical[gpu["ordinal"]]
            if gpu["fraction"] < 1 and gpu["memory_total"]:
                limit_mb = int(gpu["fraction"] * gpu["memory_total"] / 2**20)
                tf.config.set_logical_device_configuration(
                    device, [tf.config.LogicalDeviceConfiguration(memory_limit=limit_mb)])
            else:
                tf.config.experimental.set_memory_growth(device, True)


CONTEXT = TFContext()
