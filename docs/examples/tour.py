"""A tour of dryml: define Objects, rebuild them from definitions, save, load and inspect.

Run it with only dryml-core installed::

    python3 -m pip install ./dryml-core && python3 docs/examples/tour.py

It leaves ``pipe.dry`` in the current directory for ``dryml inspect pipe.dry``. The README's
tour is this file, block by block: pasted in order into one Python session, the blocks run.
"""

# 1. An Object remembers the arguments it was built with; nothing to write for that.
from __future__ import annotations

from typing import Any

import numpy as np

from dryml import Object, ObjectDef, load_object, save_object
from dryml.format import read_manifest


class Scaler(Object):
    """Scales data to a target standard deviation; the factor is learned by `fit`."""
    def __init__(self, target_std: float = 1.0) -> None:
        self.target_std = target_std
        self.factor: np.ndarray | None = None
    def fit(self, x: np.ndarray) -> Scaler:
        """Learn the per-column factor from ``x``."""
        self.factor = self.target_std / x.std(axis=0)
        return self
    # State beyond the constructor arguments goes through the store.
    def save_object_imp(self, store: Any) -> None:
        store.put("factor", self.factor)
    def load_object_imp(self, store: Any) -> None:
        self.factor = store.get("factor")


class Pipeline(Object):
    """A chain of steps; the steps are Objects too."""
    def __init__(self, *steps: Object, name: str = "pipeline") -> None:
        self.steps = steps
        self.name = name


scaler = Scaler(target_std=2.0)
pipe = Pipeline(scaler, scaler, name="demo")  # the same step twice: stored once
assert scaler.dry_kwargs["target_std"] == 2.0 and pipe.dry_args == (scaler, scaler)
print("scaler:", scaler)
print("pipeline kwargs:", pipe.dry_kwargs)

# 2. A definition is the recipe: build() makes a new object from it.
definition = scaler.definition()
assert isinstance(definition, ObjectDef) and definition.cls is Scaler
fresh = ObjectDef(Scaler, target_std=0.5).build()
assert fresh.target_std == 0.5 and fresh.dry_id != scaler.dry_id
print("definition:", definition.to_dict()["cls"], definition.kwargs["target_std"])

# 3. Save to one .dry file, load it back: state, ids and sharing survive.
scaler.fit(np.random.default_rng(0).normal(size=(1000, 3)))
save_object(pipe, "pipe.dry")
loaded = load_object("pipe.dry")
assert loaded.dry_id == pipe.dry_id and loaded.name == "demo"
assert loaded.steps[0] is loaded.steps[1]
np.testing.assert_array_equal(loaded.steps[0].factor, scaler.factor)

# 4. Inspect the file without importing any class it names.
for node in read_manifest("pipe.dry").objects:
    print(f"  {node.cls}  id={node.id[:8]}  state={sorted(node.state)}")

print("tour done: see the whole file with `dryml inspect pipe.dry`")
