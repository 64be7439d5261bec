"""Train a PyTorch MLP built from components, with early stopping; save, reload, compare.

Run: ``python docs/examples/torch_training.py`` (needs dryml-core and dryml-torch).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from dryml import load_object, metrics, save_object
from dryml.data import NumpyDataset
from dryml.models import EarlyStopping, TrainSpec
from dryml_torch.models import Loss, Optimizer, Sequential, TorchTrainable


def blobs(n: int, seed: int) -> NumpyDataset:
    """Three Gaussian blobs in 8 dimensions: a supervised Dataset of (x, label)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.eye(3, 8) * 4
    x = (rng.normal(size=(n, 8)) + centers[y]).astype(np.float32)
    return NumpyDataset((x, y), supervised=True)


def main() -> None:
    """Define, train (in a torch worker), score, save and reload a torch classifier."""
    net = Sequential([("Linear", {"in_features": 8, "out_features": 32}), ("ReLU", {}),
                      ("Dropout", {"p": 0.1}),
                      ("Linear", {"in_features": 32, "out_features": 3})])
    spec = TrainSpec(epochs=50, batch_size=32, validation_split=0.2,
                     early_stopping=EarlyStopping(patience=3), seed=0)
    model = TorchTrainable(net, Optimizer("Adam", lr=1e-2), Loss("CrossEntropyLoss"), spec)

    train, test = blobs(1000, seed=1), blobs(500, seed=2)
    model.train(train)  # runs in a torch worker; the progress bar goes to stderr
    progress = model.train_state.progress
    print(f"ran {progress['epoch']} of {spec.epochs} epochs; best val_loss "
          f"{progress['best']:.4f} at epoch {progress['best_epoch']} (weights restored)")
    accuracy = metrics.accuracy(model, test)
    print(f"test accuracy {accuracy:.3f}")
    assert accuracy > 0.9

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mlp.dry"
        save_object(model, path)
        loaded = load_object(path)
        same = np.array_equal(loaded.eval(test).peek()[0], model.eval(test).peek()[0])
    print(f"reloaded predictions identical: {same}")
    assert same


if __name__ == "__main__":
    main()
