"""Prepares a worker process for TensorFlow (imports it only in :meth:`prepare`).

The caller has already set ``CUDA_VISIBLE_DEVICES`` to the GPUs granted and the thread
variables to the CPUs granted. Here, before TensorFlow initialises its devices: only this
framework's GPUs visible (none when TensorFlow was granted none, although the worker may see
GPUs granted to another of its frameworks), a logical-device memory limit for a fractional GPU
(TensorFlow never gives memory back, so the limit is the only cap), memory growth for a whole
one, and thread pools sized to the CPUs.

TensorFlow's C++ start-up lines stay out of the user's terminal: ``TF_CPP_MIN_LOG_LEVEL``
defaults to 2 in the worker (the user's own value wins), and the lines that no log level hides
(absl's notice, graph version-skew errors) are in ``stderr_noise``, which the caller drops from
the worker's stderr. ``DRYML_FRAMEWORK_LOGS=1`` shows all of it again.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dryml.context import ComputeContext

__all__ = ["CONTEXT", "STDERR_NOISE", "TFContext"]

STDERR_NOISE = (
    # absl's notice before TensorFlow's first C++ log line
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    r"STDERR$",
    # tf.data graphs written by a newer Python side than the C++ runtime (harmless, it says)
    r"\] NodeDef mentions attribute \w+ which is not in the op definition: ",
    # start-up notices (INFO or WARNING: shown when TF_CPP_MIN_LOG_LEVEL is lowered)
    r"\] oneDNN custom operations are on\. ",
    r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized to use available CPU",
    r"^To enable the following instructions: .*, in other operations, rebuild TensorFlow ",
    # a CUDA build's factories registered twice, and its notices on a worker with no GPU
    r"\] Unable to register cu(?:DNN|FFT|BLAS) factory: Attempting to register factory ",
    r"\] computation placer already registered\. ",
    r"TF-TRT Warning: Could not find TensorRT$",
    r"\] Could not find cuda drivers on your machine, GPU will not be used\.$",
    r"\] failed call to cuInit: .*CUDA_ERROR_NO_DEVICE",
)
"""Lines of TensorFlow's stderr that the caller drops (searched per line), unless
``DRYML_FRAMEWORK_LOGS=1``: start-up notices only, never an error about the user's work."""


class TFContext:
    """The ``tf`` compute context."""

    stderr_noise = STDERR_NOISE

    def environment(self, ctx: ComputeContext) -> dict[str, str]:
        """Variables the worker starts with (read by TensorFlow when it loads)."""
        from dryml.context._stderr import framework_logs_shown

        threads = str(ctx.cpu_threads("tf"))
        env = {"TF_NUM_INTRAOP_THREADS": threads,
               "TF_NUM_INTEROP_THREADS": "1" if threads == "1" else "2"}
        if not framework_logs_shown():  # INFO and WARNING lines stay out; the user's level wins
            env["TF_CPP_MIN_LOG_LEVEL"] = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")
        return env

    def prepare(self, ctx: ComputeContext) -> None:
        """Import TensorFlow and configure its devices before first use."""
        import tensorflow as tf

        threads = ctx.cpu_threads("tf")
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        granted = ctx.local_gpus("tf")
        if not granted:
            if os.environ.get("CUDA_VISIBLE_DEVICES") != "":
                # the worker may see GPUs granted to another framework in it (torch's), or
                # every GPU (no CUDA_VISIBLE_DEVICES): TF would map nearly all their memory
                tf.config.set_visible_devices([], "GPU")
            return  # none visible at all: no device enumeration at start-up
        physical = tf.config.list_physical_devices("GPU")
        mine = [g for g in granted if g["ordinal"] < len(physical)]
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
