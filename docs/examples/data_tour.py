"""A tour of dryml.data: one Dataset API over in-memory arrays, generators and frameworks.

Runs with only dryml-core installed; the PyTorch and TensorFlow steps run when dryml-torch /
dryml-tf are installed::

    python3 docs/examples/data_tour.py
"""

from __future__ import annotations

import importlib.util

import numpy as np

from dryml.data import NumpyDataset
from dryml.errors import BackendUnavailableError, DatasetError


def main() -> None:
    """Walk through the API, asserting what each step gives."""
    rng = np.random.default_rng(0)
    x = rng.random((1000, 8), dtype=np.float32)
    y = (x.sum(axis=1) > 4).astype(np.int64)

    # 1. Arrays are one batch; (x, y) with supervised=True is supervised data.
    ds = NumpyDataset((x, y), supervised=True)
    assert ds.batch_size == 1000 and len(ds) == 1
    examples = ds.unbatch()
    assert len(examples) == 1000 and examples.peek()[0].shape == (8,)

    # 2. Batching keeps the last, smaller batch unless asked; batches are views, not copies.
    batches = ds.batch(256)
    assert [len(b[1]) for b in batches] == [256, 256, 256, 232]
    assert len(ds.batch(256, drop_remainder=True)) == 3
    assert np.shares_memory(batches.peek()[0], x)

    # 3. A seeded shuffle is reproducible and keeps the batch size; take/skip split the data.
    shuffled = ds.shuffle(seed=42).batch(100)
    train, valid = shuffled.take(8), shuffled.skip(8)
    assert (len(train), len(valid)) == (8, 2)
    seen = np.concatenate([b[1] for b in train] + [b[1] for b in valid])
    assert seen.tolist() == np.concatenate([b[1] for b in shuffled]).tolist()

    # 4. Indexes follow their examples; map works per example, map_batches per batch.
    indexed = examples.as_indexed().shuffle(seed=1)
    for i, (xi, _) in indexed.take(5):
        assert np.array_equal(xi, x[i])
    doubled = batches.apply_x(lambda xb: xb * 2).map_batches(lambda b: (b[0].mean(), b[1]))
    assert len(doubled) == 4

    # 5. Generators: pass a callable returning a fresh iterator (a generator object is refused).
    def rows():
        for i in range(10):
            yield {"id": i, "features": np.full(3, i, dtype=np.float32)}

    streamed = NumpyDataset(rows).batch(4)
    assert [b["id"].tolist() for b in streamed][-1] == [8, 9]
    try:
        NumpyDataset(rows())
    except DatasetError as exc:
        print("refused:", exc)

    # 6. Frameworks: conversions come from the backends and share memory where they can.
    if importlib.util.find_spec("dryml_torch") and importlib.util.find_spec("torch"):
        import torch
        from torch.utils.data import DataLoader

        torch_ds = batches.torch()
        xb, _ = torch_ds.peek()
        assert isinstance(xb, torch.Tensor) and np.shares_memory(xb.numpy(), x)
        assert sum(len(b[1]) for b in DataLoader(torch_ds, batch_size=None)) == 1000
        print("torch:", torch_ds)
    else:
        try:
            batches.torch()
        except BackendUnavailableError as exc:
            print("no torch backend:", exc)
    if importlib.util.find_spec("dryml_tf") and importlib.util.find_spec("tensorflow"):
        tf_ds = batches.tf().prefetch()
        assert sum(int(b[1].shape[0]) for b in tf_ds) == 1000
        back = tf_ds.numpy()
        assert np.array_equal(back.peek()[0], x[:256])
        print("tf:", tf_ds)
    print("data tour: ok")


if __name__ == "__main__":
    main()
