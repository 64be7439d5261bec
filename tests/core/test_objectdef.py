"""ObjectDef: building, sharing, structural equality and the plain-JSON form."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dryml import Object, ObjectDef, save_object
from dryml.errors import ArgumentError, SerializationError, UntrustedClassError


class Part(Object):
    def __init__(self, value: Any = None, *, child: Any = None) -> None:
        self.value, self.child = value, child


class Pair(Object):
    def __init__(self, left: Any, right: Any) -> None:
        self.left, self.right = left, right


class Trained(Object):
    dry_mut = True  # its state changes after construction

    def __init__(self, value: Any = None) -> None:
        self.value = value


def test_accessors_and_build() -> None:
    d = ObjectDef(Part, 3, child=None)
    assert (d.cls, d.args, d.kwargs, d.dry_id, d.dry_mut) == (Part, (3,), {"child": None},
                                                              None, False)
    obj = d.build()
    assert isinstance(obj, Part) and obj.value == 3
    assert obj.dry_args == (3,)


def test_without_id_builds_fresh_ids_with_id_builds_that_id() -> None:
    d = ObjectDef(Part, 1)
    assert d.build().dry_id != d.build().dry_id
    fixed = ObjectDef(Part, 1, dry_id="abc")
    assert fixed.build().dry_id == "abc"
    assert fixed.without_id().dry_id is None


def test_nested_defs_with_one_id_build_one_shared_instance() -> None:
    shared = ObjectDef(Part, "s", dry_id="shared-1")
    obj = ObjectDef(Pair, shared, [shared, {"x": shared}]).build()
    assert obj.left is obj.right[0] is obj.right[1]["x"]
    again = ObjectDef(Pair, shared, shared).build()
    assert again.left is not obj.left  # sharing holds within one build only
    fresh = ObjectDef(Pair, ObjectDef(Part, 1), ObjectDef(Part, 1)).build()
    assert fresh.left is not fresh.right


def test_nested_defs_with_one_id_and_other_arguments_are_refused() -> None:
    """The second definition's arguments were ignored, silently (found by review)."""
    with pytest.raises(ArgumentError, match="two definitions in this one have the dry_id 'p'"):
        ObjectDef(Pair, ObjectDef(Part, 1, dry_id="p"), ObjectDef(Part, 9, dry_id="p")).build()


def test_two_objects_with_one_id_in_one_graph_are_refused_when_saved() -> None:
    """A file holds one object per id: a retrained copy saved beside its original (or two
    builds of one ObjectDef with an id) lost the second one's arguments and state, and both
    slots loaded as one object (found by review). A shared object is still saved once."""
    import io

    from dryml import load_object, save_object
    from dryml.errors import SerializationError

    for left, right in ((Part(1, dry_id="same"), Part(2, dry_id="same")),
                        (Trained(1, dry_id="same"), Trained(1, dry_id="same"))):
        with pytest.raises(SerializationError, match="two different objects in this graph "
                                                     "have the dry_id 'same'"):
            save_object(Pair(left, right), io.BytesIO())
    shared = ObjectDef(Part, 1, dry_id="same").build()
    buffer = io.BytesIO()
    save_object(Pair(shared, [shared]), buffer)
    loaded = load_object(io.BytesIO(buffer.getvalue()))
    assert loaded.left is loaded.right[0]


def test_fresh_ids_gives_every_nested_id_a_new_one_and_keeps_sharing() -> None:
    """``without_id()`` drops only the top-level id: copies of an object made with it kept
    their nested objects' ids, so saving a copy beside its original was refused (found by
    review). ``fresh_ids()`` renames them all, one new id per old one."""
    import io

    from dryml import save_object

    shared = ObjectDef(Part, 1, dry_id="s")
    original = ObjectDef(Pair, shared, [shared], dry_id="o").build()
    copy = original.definition().fresh_ids().build()
    assert copy.dry_id != original.dry_id and copy.left.dry_id not in ("s", None)
    assert copy.left is copy.right[0]  # shared within the copy, as in the original
    save_object(Pair(original, copy), io.BytesIO())


def test_equal_immutable_objects_with_one_id_are_saved_once() -> None:
    """Two loads of one object that never changes are one object to a file."""
    import io

    from dryml import load_object, save_object

    fixed = ObjectDef(Part, 1, dry_id="same")
    buffer = io.BytesIO()
    save_object(Pair(fixed.build(), fixed.build()), buffer)
    loaded = load_object(io.BytesIO(buffer.getvalue()))
    assert loaded.left is loaded.right


def test_build_does_not_alias_definition_values() -> None:
    d = ObjectDef(Part, [1, 2])
    obj = d.build()
    obj.value.append(3)
    assert d.args == ([1, 2],)


def test_structural_equality() -> None:
    assert ObjectDef(Part, np.arange(3)) == ObjectDef(Part, np.arange(3))
    assert ObjectDef(Part, np.arange(3)) != ObjectDef(Part, np.arange(3.0))
    assert ObjectDef(Part, (1,)) != ObjectDef(Part, [1])
    assert ObjectDef(Part, 1) != ObjectDef(Pair, 1, 2)
    assert ObjectDef(Part, math.nan) == ObjectDef(Part, math.nan)


def test_dict_keys_are_compared_as_values_too() -> None:
    """``{True: "x"}`` and ``{1: "x"}`` have equal Python keys, so definitions holding them
    were equal: two immutable objects with one id, one of each, saved as one, and the file
    gave the other's key back."""
    assert ObjectDef(Part, {True: "x"}) != ObjectDef(Part, {1: "x"})
    assert ObjectDef(Part, {1.0: "x"}) != ObjectDef(Part, {1: "x"})
    assert ObjectDef(Part, {(1, True): 0}) != ObjectDef(Part, {(1, 1): 0})
    assert ObjectDef(Part, {1: "x", "a": [True]}) == ObjectDef(Part, {"a": [True], 1: "x"})
    with pytest.raises(SerializationError, match="two different objects in this graph"):
        save_object(Pair(Part({1: "x"}, dry_id="p"), Part({True: "x"}, dry_id="p")),
                    io.BytesIO())


def test_non_object_class_is_refused() -> None:
    with pytest.raises(ArgumentError, match="dryml.Object subclass"):
        ObjectDef(dict)  # type: ignore[arg-type]


def test_to_dict_is_plain_readable_json() -> None:
    d = ObjectDef(Pair, ObjectDef(Part, (1, b"\x00"), dry_id="p"), {"lr": 0.1, 3: "x"})
    text = json.dumps(d.to_dict(), indent=1)
    assert '"cls": "test_objectdef:Pair"' in text.replace("tests.core.", "")
    assert ObjectDef.from_dict(json.loads(text)) == d


def test_from_dict_applies_trust_rules() -> None:
    data = ObjectDef(Part, 1).to_dict()
    data["cls"] = "os:system"
    with pytest.raises(UntrustedClassError, match="not a dryml.Object subclass"):
        ObjectDef.from_dict(data)
    data["cls"] = "some_module_nobody_imported:Thing"
    with pytest.raises(UntrustedClassError, match="not imported and not trusted"):
        ObjectDef.from_dict(data)


def test_from_dict_refuses_a_dry_mut_that_is_not_a_bool() -> None:
    """"dry_mut": "false" (a hand-written or YAML-converted definition) read as True."""
    from dryml.errors import FormatError

    data = ObjectDef(Part, 1).to_dict()
    assert data["dry_mut"] is False
    for bad in ("false", 0, None):
        with pytest.raises(FormatError, match="dry_mut must be true or false"):
            ObjectDef.from_dict({**data, "dry_mut": bad})
    assert ObjectDef.from_dict({**data, "dry_mut": True}).dry_mut is True
    # nor does a Repo index it from a file's manifest (found by review)
    from dryml.repo._defjson import manifest_definition

    node = {"id": "p", "cls": data["cls"], "dry_mut": "false", "args": [1], "kwargs": {}}
    with pytest.raises(FormatError, match="dry_mut must be true or false"):
        manifest_definition({"root": "p", "objects": [node]}, None)
    # nor the constructor (found by audit): ObjectDef(Part, 1, dry_mut="false") was mutable
    for bad in ("false", 0, 1):
        with pytest.raises(ArgumentError, match="dry_mut must be True, False or None"):
            ObjectDef(Part, 1, dry_mut=bad)  # type: ignore[arg-type]
    assert ObjectDef(Part, 1, dry_mut=False).dry_mut is False
    assert manifest_definition({"root": "p", "objects": [{**node, "dry_mut": False}]},
                               None)["dry_mut"] is False


# -- hypothesis: nested argument structures round-trip ---------------------------------------

atoms = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8)
    | st.binary(max_size=16)
    | hnp.arrays(st.sampled_from([np.float32, np.int64, np.bool_, np.uint8]),
                 hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))
    | st.sampled_from([np.float32(1.5), np.int16(-3), np.bool_(True)])
)
hashable_keys = st.integers() | st.text(max_size=6) | st.tuples(st.integers(), st.text(max_size=3))
values = st.recursive(
    atoms,
    lambda inner: st.lists(inner, max_size=3)
    | st.tuples(inner, inner)
    | st.dictionaries(hashable_keys, inner, max_size=3)
    | st.builds(lambda v: ObjectDef(Part, v), inner),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(values, values)
def test_hypothesis_to_dict_round_trip(a: Any, b: Any) -> None:
    d = ObjectDef(Pair, a, b)
    back = ObjectDef.from_dict(json.loads(json.dumps(d.to_dict())))
    assert back == d


@settings(max_examples=100, deadline=None)
@given(values, values)
def test_hypothesis_save_load_round_trip(a: Any, b: Any) -> None:
    import io

    from dryml import load_object, save_object

    obj = Pair(a, b)
    buf = io.BytesIO()
    save_object(obj, buf)
    buf.seek(0)
    loaded = load_object(buf)
    assert loaded.definition() == obj.definition()
    assert type(loaded) is Pair


def test_numpy_scalars_and_arrays_with_nat_nan_or_signed_zero_compare_alike() -> None:
    """A definition holding an array with NaT was not equal to its own copy, and numpy scalars
    compared by their bytes (np.float64(-0.0) != np.float64(0.0)) where arrays compare by value;
    both now compare as arrays do: -0.0 equals 0.0, NaN NaN, NaT NaT, dtypes must match."""
    import numpy as np

    class Holds(Object):
        def __init__(self, value: Any) -> None:
            self.value = value

    dates = np.array(["NaT", "2020-01-01"], dtype="datetime64[D]")
    spans = np.array([1, "NaT"], dtype="timedelta64[s]")
    for value in (dates, spans, dates[0], np.float64("nan"), np.array([np.nan, 1.0])):
        assert ObjectDef(Holds, value) == ObjectDef(Holds, value.copy()), value
    assert ObjectDef(Holds, np.float64(-0.0)) == ObjectDef(Holds, np.float64(0.0))
    record = np.array([(np.nan, 1)], dtype=[("x", "f8"), ("n", "i4")])  # found by review
    for value in (record, record[0]):
        assert ObjectDef(Holds, value) == ObjectDef(Holds, value.copy())
    assert ObjectDef(Holds, np.float32(1)) != ObjectDef(Holds, np.float64(1))
    assert ObjectDef(Holds, np.datetime64("2020-01-01")) != ObjectDef(Holds, np.datetime64("NaT"))
    built = Holds(dates, dry_id="h")
    assert built.definition() == built.definition().copy() == ObjectDef(Holds, dates, dry_id="h")
