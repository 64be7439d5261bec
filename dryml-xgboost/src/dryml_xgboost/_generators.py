"""numpy random generators as an XGBoost model's ``random_state``, in a file's JSON.

XGBoost's scikit-learn wrappers accept ``random_state=np.random.RandomState(...)`` or a
``np.random.Generator`` and draw a seed from it at every ``fit``. The generator is stored as
its bit generator's state and loads as a generator in that same state, so the loaded model
draws the seeds the original would have drawn. Only states of the bit generators numpy's
own constructors use are stored (``RandomState``: MT19937; ``default_rng``: PCG64; and
PCG64DXSM, MT19937), and a state read from a file is checked field by field before numpy sees
it: numpy's setters trust it (an MT19937 position past its key crashed the process).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dryml._random_states import check_bit_generator_state
from dryml.errors import FormatError, SerializationError

__all__ = ["GENERATORS", "check_state", "generator_from", "state_of"]

#: The generator types stored, by the tag written for them.
GENERATORS: dict[str, type] = {"RandomState": np.random.RandomState,
                               "Generator": np.random.Generator}
_BIT_GENERATORS: dict[str, type[np.random.BitGenerator]] = {
    "MT19937": np.random.MT19937, "PCG64": np.random.PCG64, "PCG64DXSM": np.random.PCG64DXSM}


def state_of(value: Any, path: str) -> tuple[str, dict[str, Any]]:
    """(tag, state) of a RandomState or Generator; SerializationError for subclasses and
    other bit generators."""
    tag = "RandomState" if isinstance(value, np.random.RandomState) else "Generator"
    state = value.get_state(legacy=False) if tag == "RandomState" else value.bit_generator.state
    expected = ("MT19937",) if tag == "RandomState" else tuple(_BIT_GENERATORS)
    if type(value) is not GENERATORS[tag] or state.get("bit_generator") not in expected:
        raise SerializationError(
            f"XGBoost {path}: a {type(value).__qualname__} over "
            f"{state.get('bit_generator')} cannot be saved (only numpy's {tag} over "
            f"{', '.join(expected)}); pass an int seed (random_state=42) instead")
    return tag, state


def generator_from(tag: str, state: Any) -> Any:
    """A new generator of kind ``tag`` in ``state`` (FormatError unless :func:`check_state`
    accepts it)."""
    name = check_state(tag, state)
    bit_generator = _BIT_GENERATORS[name]()
    if tag == "RandomState":
        out = np.random.RandomState(bit_generator)
        out.set_state(state)
        return out
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def check_state(tag: str, state: Any) -> str:
    """The bit generator's name when ``state`` is one numpy writes for ``tag`` (checked by
    dryml's :func:`~dryml._random_states.check_bit_generator_state`), else FormatError."""
    if tag not in GENERATORS:
        raise FormatError(f"a numpy {tag} in the XGBoost parameters is not a generator")
    name = check_bit_generator_state(state, legacy=tag == "RandomState")
    if name not in _BIT_GENERATORS:
        raise FormatError(f"a numpy {tag} over {name} in the XGBoost parameters is not one "
                          "dryml writes: the file was altered")
    return name
