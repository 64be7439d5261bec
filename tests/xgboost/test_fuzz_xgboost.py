"""A crafted XGBoost member never kills the loading process (issue 10, item 2).

Files are real models saved by dryml whose UBJSON model member (or training configuration)
was changed and then given *valid* checksums, so the bytes reach the model checks; each case
loads (and, when it loads, predicts) in a worker subprocess with a memory cap and a timeout.
Without the checks (dryml before issue 10), 10 of the 20 crafted cases below kill the process
(SIGSEGV, one SIGABRT) and about one random mutation in ten does.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("xgboost")
    pytest.importorskip("sklearn")

import xgbfuzz

from dryml_xgboost._ubjson import decode

BAD = ("crash", "hang", "other")


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return xgbfuzz.saved_files()


def _tree(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
    booster = doc["learner"]["gradient_booster"]
    model = booster["gbtree"]["model"] if booster["name"] == "dart" else booster["model"]
    return model["trees"][i]  # type: ignore[no-any-return]


def _model(doc: dict[str, Any]) -> dict[str, Any]:
    booster = doc["learner"]["gradient_booster"]
    return booster["gbtree"]["model"] if booster["name"] == "dart" else booster["model"]  # type: ignore[no-any-return]


def _set(tree: dict[str, Any], key: str, index: int, value: int) -> None:
    array = np.array(tree[key])
    array[index] = value
    tree[key] = array


def _cat_tree(doc: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in _model(doc)["trees"] if len(t["categories_nodes"]))


# Each edit is one way XGBoost's loader or predictor reads out of bounds (on dryml without
# the checks, most of these end in SIGSEGV).
CRAFTED: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "left child out of range": ("booster_gbtree",
                                lambda d: _set(_tree(d), "left_children", 0, 10**6)),
    "negative right child": ("regressor", lambda d: _set(_tree(d), "right_children", 0, -7)),
    "parent out of range": ("booster_dart", lambda d: _set(_tree(d), "parents", 1, 10**6)),
    "child cycle": ("ranker", lambda d: _set(_tree(d), "left_children", 0, 0)),
    "split feature out of range": ("classifier_multi",
                                   lambda d: _set(_tree(d), "split_indices", 0, 10**6)),
    "duplicate tree id": ("classifier_binary",
                          lambda d: _model(d)["trees"][1].update(id=0)),
    "tree id out of range": ("regressor", lambda d: _model(d)["trees"][0].update(id=99)),
    "num_nodes larger than the arrays": (
        "booster_gbtree", lambda d: _tree(d)["tree_param"].update(num_nodes="100000")),
    "category segment past the categories": (
        "booster_cat", lambda d: _set(_cat_tree(d), "categories_segments", 0, 10**6)),
    "categorical node out of range": (
        "regressor_cat", lambda d: _set(_cat_tree(d), "categories_nodes", 0, 10**6)),
    "huge category": ("booster_cat", lambda d: _set(_cat_tree(d), "categories", 0, 2**31 - 1)),
    "encoder segments past the categories": (
        "regressor_cat",  # (needs pandas: skipped without it)
        lambda d: _model(d)["cats"].update(feature_segments=np.array([0, 9, 9, 10**6],
                                                                     dtype=">i4"))),
    "encoder sorted index out of range": (
        "regressor_cat",
        lambda d: _model(d)["cats"].update(sorted_idx=np.full(13, 10**6, dtype=">i4"))),
    "tree_info group out of range": (
        "classifier_multi", lambda d: _set(_model(d), "tree_info", 0, 1000)),
    "iteration_indptr past the trees": (
        "classifier_multi", lambda d: _set(_model(d), "iteration_indptr", 1, 10**6)),
    "num_class larger than base_score": (
        "classifier_multi",
        lambda d: d["learner"]["learner_model_param"].update(num_class="1000")),
    "gblinear weights too short": (
        "booster_linear",
        lambda d: d["learner"]["gradient_booster"]["model"].update(weights=[0.5])),
    "num_feature huge": ("regressor",
                         lambda d: d["learner"]["learner_model_param"].update(
                             num_feature="4294967295")),
}


def _crafted(files: dict[str, bytes], tag: str, edit: Callable[[dict[str, Any]], None]
             ) -> bytes:
    doc = decode(xgbfuzz.model_member(files[tag]))
    edit(doc)
    return xgbfuzz.with_model(files[tag], xgbfuzz.encode(doc))


def _raw_crafted(files: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """Byte-level lies XGBoost's UBJSON reader believes (lengths past the end)."""
    member = xgbfuzz.model_member(files["regressor"])
    key = member.index(b"learner") - 8  # the int64 length of the first key
    long_key = member[:key] + struct.pack(">q", 2**40) + member[key + 8:]
    count = member.index(b"[$d#L") + 5
    long_array = member[:count] + struct.pack(">q", 2**28) + member[count + 8:]
    return [("regressor", xgbfuzz.with_model(files["regressor"], long_key)),
            ("regressor", xgbfuzz.with_model(files["regressor"], long_array))]


def test_every_model_kind_loads_and_predicts_as_saved(files: dict[str, bytes]) -> None:
    """The checks accept every kind of model XGBoost writes (nothing legitimate refused)."""
    outcomes = xgbfuzz.run_cases(list(files.items()))
    assert set(outcomes.values()) == {"loaded"}, outcomes


def test_crafted_models_are_format_errors_not_crashes(files: dict[str, bytes]) -> None:
    crafted = {name: case for name, case in CRAFTED.items() if case[0] in files}
    cases = [(tag, _crafted(files, tag, edit)) for tag, edit in crafted.values()]
    cases += _raw_crafted(files)
    outcomes = xgbfuzz.run_cases(cases)
    names = [*crafted, "key length past the end", "array count past the end"]
    got = {names[i]: outcome for i, outcome in outcomes.items()}
    assert got == dict.fromkeys(names, "FormatError")


def test_fuzz_model_members_never_crash(files: dict[str, bytes]) -> None:
    """Random mutations (numbers, strings, counts, array lengths, raw bytes, configuration)
    end in a loaded model or a dryml error: never a signal, a hang or another exception."""
    cases = xgbfuzz.make_cases(files, 270, seed=2026)
    outcomes = xgbfuzz.run_cases(cases)
    counts = xgbfuzz.summarize(outcomes)
    assert len(outcomes) == len(cases)
    assert not [o for o in outcomes.values() if o.startswith(BAD)], counts
    assert counts["FormatError"] > len(cases) // 3, counts
    assert counts["loaded"] > 0, counts


def _outcome(member: bytes, by_columns: bool) -> str:
    from dryml.errors import FormatError
    from dryml_xgboost._validate import check_model

    try:
        check_model(member, by_columns=by_columns, cache=False)
    except FormatError:
        return "FormatError"
    return "accepted"


def test_checks_by_columns_agree_with_checks_value_by_value(files: dict[str, bytes]) -> None:
    """Trees read and checked by columns (the fast path, issue 16) accept and refuse exactly
    the members that reading and checking every value one by one does: random mutations and
    the crafted cases (no process dies either way: nothing here reaches XGBoost)."""
    from dryml_xgboost._ubjson import Records

    members = [xgbfuzz.model_member(data) for _, data in xgbfuzz.make_cases(files, 400, 11)]
    crafted = {name: case for name, case in CRAFTED.items() if case[0] in files}
    members += [xgbfuzz.model_member(_crafted(files, tag, edit))
                for tag, edit in crafted.values()]
    members += [xgbfuzz.model_member(data) for _, data in _raw_crafted(files)]
    members += [xgbfuzz.model_member(data) for data in files.values()]
    outcomes = [(_outcome(m, True), _outcome(m, False)) for m in members]
    assert [i for i, (fast, slow) in enumerate(outcomes) if fast != slow] == []
    assert sum(fast == "FormatError" for fast, _ in outcomes) > len(members) // 3
    doc = decode(xgbfuzz.model_member(files["regressor"]), frozenset({"trees"}))
    assert isinstance(doc["learner"]["gradient_booster"]["model"]["trees"], Records)


def test_a_member_checked_once_is_not_checked_again_but_a_changed_one_is(
        files: dict[str, bytes]) -> None:
    from dryml.errors import FormatError
    from dryml_xgboost._validate import check_model

    member = xgbfuzz.model_member(files["regressor"])
    assert check_model(member) is check_model(bytes(bytearray(member)))  # remembered
    bad = _crafted(files, "regressor", CRAFTED["negative right child"][1])
    bad_member = xgbfuzz.model_member(bad)
    assert len(bad_member) == len(member)
    for _ in range(2):
        with pytest.raises(FormatError):
            check_model(bad_member)


def test_a_config_checked_with_a_remembered_model_is_still_checked_when_it_changes(
        files: dict[str, bytes]) -> None:
    """The configuration is remembered with its model (issue 16: its JSON parse cost a tenth
    of XGBoost's load), but only the exact text checked: the same model with another
    configuration is checked again, through a real load_object, and refused every time."""
    import io

    from dryml import load_object
    from dryml.errors import FormatError

    def disagree(manifest: dict[str, Any]) -> None:
        entry = xgbfuzz._entry(manifest)
        config = json.loads(entry["config"])
        config["learner"]["learner_train_param"]["booster"] = "gblinear"
        entry["config"] = json.dumps(config)

    def unprintable(manifest: dict[str, Any]) -> None:
        entry = xgbfuzz._entry(manifest)
        entry["config"] = entry["config"].replace('"learner"', '"learner\\u0007"', 1)

    good = files["regressor"]
    for _ in range(2):  # the second load is answered from the memo
        assert load_object(io.BytesIO(good)).model is not None
    for edit in (disagree, unprintable):
        bad = xgbfuzz.with_manifest(good, edit)
        assert xgbfuzz.model_member(bad) == xgbfuzz.model_member(good)
        for _ in range(2):
            with pytest.raises(FormatError, match="config"):
                load_object(io.BytesIO(bad))
    assert load_object(io.BytesIO(good)).model is not None


def test_configs_remembered_for_one_model_never_pass_for_another_with_its_digest(
        files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """A member whose digest equals a remembered one's (xxh3 is not a cryptographic hash: a
    crafted file can collide) gets no memo hit, so the classifier's configuration is checked
    against the regressor's model, and refused, on every load."""
    import io

    from dryml import load_object
    from dryml.errors import FormatError
    from dryml_xgboost import _validate

    monkeypatch.setattr(_validate, "_CHECKED", _validate._Checked())
    monkeypatch.setattr(_validate._Checked, "key", staticmethod(lambda data: (0, b"same")))
    classifier = files["classifier_binary"]
    assert load_object(io.BytesIO(classifier)).model is not None  # model and config kept
    mixed = xgbfuzz.with_model(classifier, xgbfuzz.model_member(files["regressor"]))
    for _ in range(2):
        with pytest.raises(FormatError, match="config"):
            load_object(io.BytesIO(mixed))


def test_the_memo_counts_configuration_text_in_its_bound(
        files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """Remembered configurations count toward the memo's bound, eight at most per model:
    loading one model with many configurations does not grow memory without end."""
    import io

    from dryml import load_object
    from dryml_xgboost import _validate

    memo = _validate._Checked()
    monkeypatch.setattr(_validate, "_CHECKED", memo)
    good = files["regressor"]

    def with_seed(seed: int) -> bytes:
        def edit(manifest: dict[str, Any]) -> None:
            entry = xgbfuzz._entry(manifest)
            config = json.loads(entry["config"])
            config["learner"]["generic_param"]["seed"] = str(seed)
            entry["config"] = json.dumps(config)
        return xgbfuzz.with_manifest(good, edit)

    for seed in range(20):
        assert load_object(io.BytesIO(with_seed(seed))).model is not None
        (entry,) = memo.entries.values()
        assert len(entry.configs) <= memo.CONFIGS
        assert memo.size == entry.size() <= memo.LIMIT
    assert len(entry.configs) == memo.CONFIGS
    # past the bound, the least recent model goes with its configurations
    monkeypatch.setattr(memo, "LIMIT", memo.size + 10)
    assert load_object(io.BytesIO(files["booster_linear"])).model is not None
    assert [e.data for e in memo.entries.values()] == [
        xgbfuzz.model_member(files["booster_linear"])]
    assert memo.size == sum(e.size() for e in memo.entries.values()) <= memo.LIMIT


def _node_rules_hold(trees: Any, num_feature: int) -> bool:
    """XGBoost's node rules, tree by tree in plain Python (the reference the vectorised
    checks must agree with): children in range and named once, parents that agree, deleted
    nodes nobody's child, num_deleted right, every live node reachable from the root."""
    for i in range(len(trees)):
        tree = trees.element(i) if hasattr(trees, "element") else trees[i]
        n = int(tree["tree_param"]["num_nodes"])
        left, right, parents, split, default = (
            [int(v) for v in tree[k]] for k in ("left_children", "right_children", "parents",
                                                 "split_indices", "default_left"))
        if any(d not in (0, 1) for d in default) or any(not 0 <= s < 2**31 for s in split):
            return False
        parent_of: dict[int, int] = {}
        for node in range(n):
            if (left[node] == -1) != (right[node] == -1):
                return False
            if left[node] == -1:
                continue
            if split[node] >= num_feature:
                return False
            for child in (left[node], right[node]):
                if not 1 <= child < n or child in parent_of or parents[child] != node:
                    return False
                parent_of[child] = node
        if parents[0] not in (-1, 2**31 - 1):
            return False
        if any(not 0 <= parents[node] < n for node in range(1, n)):
            return False
        deleted = {node for node in range(1, n) if left[node] == -1
                   and split[node] == 2**31 - 1 and default[node] == 1}
        if deleted & set(parent_of) or len(deleted) != int(
                tree["tree_param"].get("num_deleted", "0")):
            return False
        seen, frontier = {0}, [0]
        while frontier:
            frontier = [c for node in frontier if left[node] != -1
                        for c in (left[node], right[node])]
            seen.update(frontier)
        if len(seen) != n - len(deleted):
            return False
    return True


def test_node_checks_agree_with_a_plain_walk_of_each_tree(files: dict[str, bytes]) -> None:
    """Issue 16 made the node checks cheaper (fewer vectorised passes): node-array values
    changed at random (children, parents, split features, default directions, set to
    boundary values, neighbours, other nodes' values) are refused exactly when a plain
    per-tree walk of XGBoost's node rules says the trees are broken."""
    import random

    from dryml.errors import FormatError
    from dryml_xgboost._validate import check_model

    rng = random.Random(16)
    member = xgbfuzz.model_member(files["booster_gbtree"])
    doc = decode(member, frozenset({"trees"}))
    trees = _model(doc)["trees"]
    num_feature = int(doc["learner"]["learner_model_param"]["num_feature"])
    assert _node_rules_hold(trees, num_feature)
    keys = ("left_children", "right_children", "parents", "split_indices", "default_left")
    verdicts = []
    for _ in range(300):
        data = bytearray(member)
        for _ in range(rng.choice((1, 1, 2))):
            dtype, pos, counts = trees.typed[(rng.choice(keys),)]
            t = rng.randrange(len(trees))
            n = int(counts[t])
            j = rng.randrange(n)
            value = rng.choice((-1, 0, 1, n - 1, n, 2**31 - 1, rng.randrange(-3, n + 3), 255))
            at = int(pos[t]) + j * dtype.itemsize
            data[at:at + dtype.itemsize] = np.array([value]).astype(dtype).tobytes()
        changed = decode(bytes(data), frozenset({"trees"}))
        expected = _node_rules_hold(_model(changed)["trees"], num_feature)
        try:
            check_model(bytes(data), cache=False)
            verdicts.append((expected, True))
        except FormatError:
            verdicts.append((expected, False))
    assert [i for i, (want, got) in enumerate(verdicts) if want != got] == []
    assert 60 < sum(not got for _, got in verdicts) < 300  # both verdicts are exercised


def test_a_trained_linear_model_without_features_is_a_format_error(
        files: dict[str, bytes]) -> None:
    """A gblinear model claiming no features (its configuration, which would disagree, left
    out of the entry) loaded, and its predict raised XGBoost's own error (found by the
    hostile-file audit)."""
    import io

    from dryml import load_object
    from dryml.errors import FormatError

    def no_features(doc: dict[str, Any]) -> None:
        params = doc["learner"]["learner_model_param"]
        params["num_feature"] = "0"
        model = doc["learner"]["gradient_booster"]["model"]
        model["weights"] = list(model["weights"])[-max(int(params["num_class"]), 1):]

    crafted = xgbfuzz.with_manifest(_crafted(files, "booster_linear", no_features),
                                    lambda manifest: xgbfuzz._entry(manifest).pop("config"))
    with pytest.raises(FormatError, match="num_feature: a trained linear model has features"):
        load_object(io.BytesIO(crafted))
