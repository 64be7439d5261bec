"""Train a Keras MLP built from components, with early stopping; save, reload, compare.

Run: ``python docs/examples/keras_training.py`` (needs dryml-core and dryml-tf[cpu]).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from dryml import load_object, metrics, save_object
from dryml.data import NumpyDataset
from dryml.models import EarlyStopping, TrainSpec
from dryml_tf.models import KerasTrainable, Loss, Metric, Optimizer, Sequential


def blobs(n: int, seed: int) -> NumpyDataset:
    """Three Gaussian blobs in 8 dimensions: a supervised Dataset of (x, label)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.eye(3, 8) * 4
    x = (rng.normal(size=(n, 8)) + centers[y]).astype(np.float32)
    return NumpyDataset((x, y), supervised=True)


def main() -> None:
    """Define, train (in a tf worker), score, save and reload a Keras classifier."""
    net = Sequential([("Dense", {"units": 32, "activation": "relu"}),
                      ("Dropout", {"rate": 0.1}),
                      ("Dense", {"units": 3})],          # logits: the loss takes them
                     input_shape=(8,))
    spec = TrainSpec(epochs=50, batch_size=32, validation_split=0.2,
                     early_stopping=EarlyStopping(patience=3), seed=0)
    model = KerasTrainable(net, Optimizer("Adam", learning_rate=1e-2),
                           Loss("SparseCategoricalCrossentropy", from_logits=True), spec,
                           metrics=["accuracy", Metric("SparseTopKCategoricalAccuracy", k=2)])
    print("tensorflow imported here before training:", "tensorflow" in sys.modules)

    train, test = blobs(1000, seed=1), blobs(500, seed=2)
    model.train(train)  # runs in a tf worker; the progress bar goes to stderr
    progress = model.train_state.progress
    print(f"ran {progress['epoch']} of {spec.epochs} epochs; best val_loss "
          f"{progress['best']:.4f} at epoch {progress['best_epoch']} (weights restored)")
    probs = model.eval(test).peek()[0]
    print(f"probabilities {probs.shape}, rows sum to 1: {np.allclose(probs.sum(axis=1), 1)}")
    accuracy = metrics.accuracy(model, test)
    print(f"test accuracy {accuracy:.3f}")
    assert accuracy > 0.9

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mlp.dry"
        save_object(model, path)
        loaded = load_object(path)
        same = np.array_equal(loaded.eval(test).peek()[0], probs)
    print(f"reloaded predictions identical: {same}")
    assert same


if __name__ == "__main__":
    main()
