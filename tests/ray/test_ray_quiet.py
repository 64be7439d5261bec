"""A TensorFlow actor's start-up noise stays out of the driver's terminal on Ray too (Ray
copies every actor's stderr to the driver); its real lines, and everything with
``DRYML_FRAMEWORK_LOGS=1``, still arrive."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from cluster import RAY_ENV, RayCluster

DRIVER = textwrap.dedent("""
    import os, sys, time
    import dryml.context as dc

    dc.configure(executor="ray", address=sys.argv[1])

    @dc.compute_context({"tf": {}})
    def train():
        from dryml.models import EarlyStopping, TrainSpec
        from dryml.testing.trainers import classification_data
        from dryml_tf.models import KerasTrainable, Sequential

        # early stopping's validation pipeline makes TensorFlow 2.21 log an E0000 NodeDef line
        net = Sequential([("Dense", {"units": 3})], input_shape=(4,))
        spec = TrainSpec(epochs=1, batch_size=32, validation_split=0.1, seed=0,
                         early_stopping=EarlyStopping(patience=5))
        model = KerasTrainable(net, spec=spec)
        model.train(classification_data(n=64))
        print("a line the actor writes to stderr", file=sys.stderr, flush=True)
        os.write(2, b"E0000 00:00:1.0 12 some_kernel.cc:1] a real C++ error line\\n")
        return model.trained

    print("trained", train(), flush=True)
    time.sleep(4)  # Ray's log monitor copies the actor's stderr to this driver
""")
NOISE = ("All log messages before absl::InitializeLog()", "NodeDef mentions attribute")


@pytest.mark.parametrize("switch", ["", "1"], ids=["default", "DRYML_FRAMEWORK_LOGS=1"])
def test_tensorflow_noise_from_a_ray_actor_is_dropped_unless_asked(cluster: RayCluster,
                                                                   switch: str) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "DRYML_FRAMEWORK_LOGS")}
    env.update({**RAY_ENV, "DRYML_PROGRESS": "off", "DRYML_FRAMEWORK_LOGS": switch})
    done = subprocess.run([sys.executable, "-c", DRIVER, cluster.address], capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained True" in done.stdout, done.stderr[-3000:]
    seen = done.stdout + done.stderr  # Ray prints actors' lines on the driver's stderr
    assert "a line the actor writes to stderr" in seen, seen[-3000:]
    assert "a real C++ error line" in seen, seen[-3000:]
    for line in NOISE:
        assert (line in seen) == bool(switch), (line, seen[-3000:])
