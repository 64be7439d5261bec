"""Selector semantics on live objects and definitions, and the same answers from a Repo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dryml import Object, ObjectDef
from dryml.repo import In, Not, Range, Repo, Selector


class Base(Object):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


class Mid(Base):
    pass


class Leaf(Mid):
    pass


class Other(Object):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_class_matches_subclasses_over_the_whole_mro() -> None:
    assert Selector(Base)(Leaf())
    assert Selector(Mid)(Leaf()) and not Selector(Leaf)(Mid())
    assert not Selector(Base)(Other())
    assert Selector()(Other())
    assert Selector("Leaf")(Leaf()) and Selector(f"{__name__}:Mid")(Leaf())
    assert Selector(f"{__name__}.Base")(Leaf()) and not Selector("leaf")(Leaf())


def test_works_on_objects_and_definitions_and_nothing_else() -> None:
    assert Selector(Base, args=(1,))(ObjectDef(Leaf, 1))
    assert Selector(Base, args=(1,))(Leaf(1))
    assert not Selector(Base)({"cls": Leaf})
    assert not Selector(Base)(Leaf)


def test_args_match_positionally_and_kwargs_as_a_subset() -> None:
    obj = Leaf(1, 2, lr=0.1, opt="adam")
    assert Selector(Leaf, args=(1,))(obj) and Selector(Leaf, args=(1, 2))(obj)
    assert not Selector(Leaf, args=(2,))(obj) and not Selector(Leaf, args=(1, 2, 3))(obj)
    assert Selector(Leaf, kwargs={"lr": 0.1})(obj)
    assert Selector(Leaf, kwargs={"lr": 0.1, "opt": "adam"})(obj)
    assert not Selector(Leaf, kwargs={"momentum": 0.9})(obj)
    assert not Selector(Leaf, kwargs={"lr": 0.2})(obj)
    assert Selector(Leaf, kwargs={"dry_id": obj.dry_id})(obj)


@pytest.mark.parametrize(("args", "kwargs", "says"), [
    ("adam", None, r"tuple or list .* got 'adam' \(for one argument write \('adam',\)\)"),
    ({"opt": "adam"}, None, "tuple or list of the positional arguments, got {'opt'"),
    (3, None, "tuple or list"),
    (None, [("lr", 0.1)], "kwargs must be a dict"),
], ids=["string", "dict", "number", "kwargs-list"])
def test_args_and_kwargs_of_the_wrong_kind_are_an_argument_error(
        args: Any, kwargs: Any, says: str) -> None:
    """``args=("adam")`` (a string: the comma forgotten) matched the letters and selected
    nothing; a dict matched its keys; ``args=3`` and a list of pairs as kwargs raised bare
    TypeError and AttributeError."""
    from dryml.errors import ArgumentError

    with pytest.raises(ArgumentError, match=says):
        Selector(Leaf, args=args, kwargs=kwargs)
    assert Selector(Leaf, args=["adam"])(Leaf("adam")) and Selector(Leaf, args=[])(Leaf())


def test_equality_tells_types_apart_like_objectdef() -> None:
    assert not Selector(Leaf, args=(1.0,))(Leaf(1))
    assert not Selector(Leaf, args=(True,))(Leaf(1))
    assert Selector(Leaf, args=((1, 2),))(Leaf((1, 2)))
    assert not Selector(Leaf, args=([1, 2],))(Leaf((1, 2)))
    assert Selector(Leaf, args=({"a": [1]},))(Leaf({"a": [1]}))
    arr = np.arange(3)
    assert Selector(Leaf, args=(arr,))(Leaf(arr.copy())) and not Selector(
        Leaf, args=(arr,))(Leaf(arr + 1))


def test_operators_and_predicates() -> None:
    obj = Leaf(5, lr=0.01, opt="sgd", layers=[64, 32])
    assert Selector(Leaf, kwargs={"opt": In("adam", "sgd")})(obj)
    assert Selector(Leaf, kwargs={"opt": In(["adam", "sgd"])})(obj)
    assert not Selector(Leaf, kwargs={"opt": In("adam")})(obj)
    assert Selector(Leaf, kwargs={"lr": Range(0.001, 0.1)})(obj)
    assert not Selector(Leaf, kwargs={"lr": Range(lo=0.1)})(obj)
    assert Selector(Leaf, args=(Range(5, 5),))(obj)
    assert Selector(Leaf, kwargs={"opt": Not("adam")})(obj)
    assert Selector(Leaf, kwargs={"lr": Not(Range(0.1, 1))})(obj)
    assert Selector(Leaf, kwargs={"layers": lambda v: len(v) == 2})(obj)
    assert Selector(Leaf, kwargs={"layers": [64, Range(1, 40)]})(obj)
    assert not Selector(Leaf, kwargs={"layers": [64]})(obj)
    assert not Selector(Leaf, kwargs={"opt": Range(0, 1)})(obj)
    assert not Selector(Leaf, kwargs={"opt": lambda v: v.startswith("a")})(obj)
    with pytest.raises(ValueError):
        Range()


def test_nested_selectors_and_classes_as_values() -> None:
    obj = Other(Leaf(3), block=Mid, inner=Other(Leaf(4)))
    assert Selector(Other, args=(Selector(Leaf, args=(3,)),))(obj)
    assert not Selector(Other, args=(Selector(Leaf, args=(4,)),))(obj)
    assert Selector(Other, kwargs={"inner": Selector(Other, args=(Selector(Base),))})(obj)
    assert Selector(Other, kwargs={"block": Base})(obj)  # class values: whole MRO
    assert Selector(Other, kwargs={"block": Mid})(obj)
    assert not Selector(Other, kwargs={"block": Leaf})(obj)
    assert Selector(Other, args=(Base,))(obj)  # a class against an object: an instance test
    assert not Selector(Other, args=(Other,))(obj)


def test_combining_with_or_and_and() -> None:
    a, b = Leaf(1), Other(2)
    either = Selector(Leaf) | Selector(Other, args=(2,))
    assert either(a) and either(b) and not either(Other(3))
    both = Selector(Base) & Selector(Mid, args=(1,))
    assert both(a) and not both(Leaf(2))
    with pytest.raises(TypeError):
        Selector(Leaf) | Leaf  # type: ignore[operator]


def test_from_def_ignores_ids_at_every_level() -> None:
    inner = Leaf(1, x=2)
    obj = Other(inner, k=Leaf(3))
    sel = Selector.from_def(obj.definition())
    rebuilt = obj.definition().without_id().build()  # same configuration, fresh top-level id
    assert sel(rebuilt)
    fresh_nested = Other(Leaf(1, x=2), k=Leaf(3))  # new ids everywhere
    assert sel(fresh_nested)
    assert not sel(Other(Leaf(1, x=3), k=Leaf(3)))
    assert not sel(Other(Leaf(1, x=2), k=Leaf(3), extra=1))  # extra kwargs: another config
    assert not sel(Other(Leaf(1, x=2)))
    assert not Selector.from_def(ObjectDef(Mid, 1))(Leaf(1))  # the class is exact
    assert Selector.from_def(ObjectDef(Leaf, 1))(Leaf(1))


# -- the repository gives the same answers as the live selector ----------------------------

OBJECTS = [
    Leaf(1, lr=0.1, opt="adam"), Leaf(2, lr=0.01, opt="sgd"), Mid(1, lr=0.5),
    Base(3, opt="adam", block=Leaf), Other(Leaf(1, lr=0.1), tag="a"),
    Other(Mid(2), tag="b", block=Mid), Leaf(1.0, lr=1, opt=None), Leaf(True, opt=["a", 1]),
    Other(Leaf(2, lr=0.01, opt="sgd"), tag="c"), Mid(5, lr=float("inf")),
]
VALUES = st.sampled_from([1, 2, 1.0, True, 0.1, 0.01, "adam", "sgd", None, "a", "b"])
MATCHERS = st.one_of(
    VALUES,
    st.builds(lambda vs: In(*vs), st.lists(VALUES, min_size=1, max_size=3)),
    st.builds(lambda lo, hi: Range(min(lo, hi), max(lo, hi)),
              st.sampled_from([0, 0.01, 0.1, 1, 2, 5]), st.sampled_from([0, 0.05, 1, 3, 10])),
    st.builds(Not, VALUES),
    st.sampled_from([Base, Mid, Leaf, Other]),
    st.just(lambda v: isinstance(v, str)),
)
SELECTORS = st.deferred(lambda: st.one_of(
    st.builds(Selector, st.sampled_from([None, Base, Mid, Leaf, Other, "Mid"]),
              st.lists(st.one_of(MATCHERS, NESTED), max_size=1),
              st.dictionaries(st.sampled_from(["lr", "opt", "tag", "block"]), MATCHERS,
                              max_size=1)),
))
NESTED = st.builds(Selector, st.sampled_from([Base, Leaf, Mid]),
                   st.lists(MATCHERS, max_size=1))


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    repo = Repo(tmp_path_factory.mktemp("sel") / "repo", create=True)
    for obj in OBJECTS:
        repo.add_object(obj)
    return repo


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(sel=SELECTORS, other=SELECTORS)
def test_repo_query_agrees_with_the_live_selector(filled: Repo, sel: Selector,
                                                  other: Selector) -> None:
    for query in (sel, sel | other, sel & other):
        expected = sorted(o.dry_id for o in OBJECTS if query(o))
        assert sorted(filled.ids(query)) == expected, repr(query)


def test_repo_from_def_agrees(filled: Repo) -> None:
    for obj in OBJECTS:
        sel = Selector.from_def(obj.definition().without_id())
        assert sorted(filled.ids(sel)) == sorted(o.dry_id for o in OBJECTS if sel(o))
        assert obj.dry_id in filled.ids(sel)


def test_from_def_tells_a_mutable_definition_from_an_immutable_one(tmp_path: Path) -> None:
    """``Selector.from_def(ObjectDef(C, 1, dry_mut=True))`` selected ``C(1)`` live, while the
    repository (whose digest holds dry_mut) and ``ObjectDef ==`` did not."""
    repo = Repo(tmp_path / "r", create=True)
    plain = Leaf(1)
    repo.add_object(plain)
    for definition, want in ((ObjectDef(Leaf, 1, dry_mut=True), []),
                             (ObjectDef(Leaf, 1), [plain.dry_id])):
        sel = Selector.from_def(definition)
        assert [o.dry_id for o in (plain,) if sel(o)] == want
        assert repo.ids(sel) == repo.ids(definition) == want
        assert (definition == plain.definition().without_id()) is bool(want)


def test_repo_class_names_need_no_import(filled: Repo, tmp_path: Path) -> None:
    assert sorted(filled.ids(Selector("Mid"))) == sorted(
        o.dry_id for o in OBJECTS if isinstance(o, Mid))
    assert filled.ids(Selector("mid")) == []
