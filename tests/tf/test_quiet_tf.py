"""What a user's terminal shows from a TensorFlow worker: no C++ start-up noise by default,
all of it with ``DRYML_FRAMEWORK_LOGS=1``, and real errors and the worker's own stderr always."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from backend_checks import require_backend

SCRIPT = textwrap.dedent("""
    import os, sys
    from dryml.context import compute_context
    from dryml.models import EarlyStopping, TrainSpec
    from dryml.testing.trainers import classification_data
    from dryml_tf.models import KerasTrainable, Sequential

    @compute_context({"tf": {}})
    def train():
        # early stopping's validation pipeline makes TensorFlow 2.21 log an E0000 NodeDef line
        net = Sequential([("Dense", {"units": 3})], input_shape=(4,))
        spec = TrainSpec(epochs=1, batch_size=32, validation_split=0.1, seed=0,
                         early_stopping=EarlyStopping(patience=5))
        model = KerasTrainable(net, spec=spec)
        model.train(classification_data(n=64))
        print("a line the worker writes to stderr", file=sys.stderr, flush=True)
        os.write(2, b"E0000 00:00:1.0 12 some_kernel.cc:1] a real C++ error line\\n")
        return model.trained

    @compute_context({"tf": {}})
    def bad_reshape():
        import tensorflow as tf
        return tf.reshape(tf.constant([1, 2, 3]), (2, 2))

    print("trained", train(), flush=True)
    print("-- a failing call --", file=sys.stderr, flush=True)
    try:
        bad_reshape()
    finally:  # TensorFlow's error comes back without importing TensorFlow here
        print("caller imported tensorflow:", "tensorflow" in sys.modules, flush=True)
""")

NOISE = ("All log messages before absl::InitializeLog()", "NodeDef mentions attribute")


@pytest.fixture(scope="module")
def runs() -> dict[str, subprocess.CompletedProcess[str]]:
    """The script run once quietly (the default) and once with the switch."""
    require_backend("tf")
    out = {}
    for name, extra in (("default", {}), ("switch", {"DRYML_FRAMEWORK_LOGS": "1"})):
        # the worker's defaults are what is tested: no TF_CPP_MIN_LOG_LEVEL from outside
        env = {k: v for k, v in os.environ.items()
               if k not in ("TF_CPP_MIN_LOG_LEVEL", "DRYML_FRAMEWORK_LOGS")}
        env.update({"DRYML_PROGRESS": "off", "TQDM_DISABLE": "1", **extra})
        out[name] = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True,
                                   text=True, timeout=600, env=env)
    return out


def test_tensorflow_start_up_noise_is_not_shown_by_default(
        runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    done = runs["default"]
    assert "trained True" in done.stdout, done.stderr
    from_the_worker = done.stderr.split("-- a failing call --")[0]
    for line in NOISE:
        assert line not in from_the_worker, done.stderr


def test_real_errors_and_the_workers_own_stderr_still_show(
        runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    for done in runs.values():
        assert done.returncode != 0
        assert "a line the worker writes to stderr" in done.stderr
        assert "a real C++ error line" in done.stderr
        # the call's TensorFlow error reaches the caller and its traceback is printed
        assert "Traceback (most recent call last)" in done.stderr
        assert "InvalidArgumentError" in done.stderr and "reshape" in done.stderr
        assert "caller imported tensorflow: False" in done.stdout


def test_dryml_framework_logs_shows_the_noise_again(
        runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    done = runs["switch"]
    assert "trained True" in done.stdout, done.stderr
    for line in NOISE:
        assert line in done.stderr, done.stderr
