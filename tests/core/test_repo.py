"""Repo: adding, finding, lazy loading, metadata, saving and deleting objects."""

from __future__ import annotations

import doctest
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dryml import Object, ObjectDef
from dryml.data import NumpyDataset
from dryml.errors import DrymlError, DuplicateObjectError, ObjectNotFoundError, RepoError
from dryml.models import Trainable as DryTrainable
from dryml.repo import In, Not, Range, Repo, Selector, is_loaded


class Data(Object):
    def __init__(self, n: Any, scale: float = 1.0) -> None:
        self.n = n
        self.scale = scale


class Model(Object):
    dry_mut = True

    def __init__(self, layers: int, lr: float = 0.1) -> None:
        self.layers = layers
        self.weights = np.zeros(layers)

    def save_object_imp(self, store: Any) -> None:
        store.put("weights", self.weights)

    def load_object_imp(self, store: Any) -> None:
        self.weights = store.get("weights")


class Trainable(Object):
    def __init__(self, model: Model, data: Data) -> None:
        self.model = model
        self.data = data


def issue_example() -> None:
    """The example of the issue, verbatim.

    >>> repo = Repo(directory='./test', create=True)
    >>> d1 = ObjectDef(Data, 1)
    >>> for i in range(5):
    ...     repo.add_object(d1.build())
    >>> d2 = ObjectDef(Data, 2)
    >>> for i in range(5):
    ...     repo.add_object(d2.build())
    >>> len(repo)
    10
    >>> len(repo.get(Selector(Data, args=(2,))))
    5
    """


def test_issue_example_doctest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(issue_example, globs={**globals()}):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
    assert runner.summarize(verbose=False).attempted == 7


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo", create=True)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="create=True"):
        Repo(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()
    Repo(tmp_path / "nope", create=True)
    assert (tmp_path / "nope").is_dir()


def test_add_len_contains_iter(repo: Repo) -> None:
    objs = [Data(i) for i in range(4)]
    for obj in objs:
        assert repo.add_object(obj) is None
    ids = [o.dry_id for o in objs]
    assert len(repo) == 4
    assert objs[0] in repo and objs[0].dry_id in repo and "nope" not in repo
    assert objs[1].definition() in repo
    assert sorted(o.dry_id for o in repo) == sorted(ids)
    assert sorted(p.name for p in repo.directory.glob("*.dry")) == sorted(f"{i}.dry" for i in ids)


def test_duplicate_add_is_an_error_unless_replace(repo: Repo) -> None:
    obj = Data(1)
    repo.add_object(obj)
    with pytest.raises(DuplicateObjectError, match="replace=True"):
        repo.add_object(Data(2, dry_id=obj.dry_id))
    repo.add_object(Data(2, dry_id=obj.dry_id), replace=True)
    assert len(repo) == 1
    assert repo.load(obj.dry_id).n == 2


def test_get_always_returns_a_list(repo: Repo) -> None:
    a, b = Data(1), Data(2)
    repo.add_objects([a, b])
    assert repo.get(a.dry_id) == [a]
    assert repo.get("missing") == []
    assert repo.get([a.dry_id, b]) == [a, b]
    assert len(repo.get()) == 2
    assert repo.get(Selector(Data, args=(1,))) == [a]
    assert repo.get(lambda d: d.args[0] == 2) == [b]


def test_get_one(repo: Repo) -> None:
    repo.add_objects([Data(1), Data(1), Data(2)])
    assert repo.get_one(Selector(Data, args=(2,))).n == 2
    with pytest.raises(RepoError, match="more than one"):
        repo.get_one(Selector(Data, args=(1,)))
    with pytest.raises(ObjectNotFoundError):
        repo.get_one(Selector(Data, args=(3,)))


def test_get_by_definition_ignores_ids(repo: Repo) -> None:
    model_def = ObjectDef(Model, 3, lr=0.01)
    for _ in range(3):
        repo.add_object(Trainable(model_def.build(), Data(1)))
    repo.add_object(Trainable(ObjectDef(Model, 3).build(), Data(1)))
    config = ObjectDef(Trainable, model_def, ObjectDef(Data, 1))
    assert len(repo.get(config)) == 3
    assert len(repo.get(Selector.from_def(config))) == 3
    one = repo.get(config)[0]
    assert repo.get(one.definition()) == [one]


def test_objects_load_lazily_and_no_file_is_read_for_a_query(repo: Repo) -> None:
    ids = repo.add_objects([Model(i + 1) for i in range(5)])
    del_path = repo.directory / f"{ids[0]}.dry"
    fresh = Repo(repo.directory)
    away = del_path.with_suffix(".away")
    del_path.rename(away)  # a query must not need the file (chmod would not stop root)
    try:
        found = fresh.get(Selector(Model, args=(1,)))
        assert len(found) == 1 and not is_loaded(found[0])
        assert isinstance(found[0], Model)
        assert found[0].dry_id == ids[0]
        assert found[0].definition() == ObjectDef(Model, 1, dry_id=ids[0])
        assert not is_loaded(found[0])
    finally:
        away.rename(del_path)
    assert found[0].weights.shape == (1,)  # first use loads the file
    assert is_loaded(found[0]) and type(found[0]) is Model
    assert fresh.get(ids[0])[0] is found[0]


def test_lazy_objects_are_not_kept_by_the_repo(repo: Repo) -> None:
    import gc

    ids = repo.add_objects([Model(3) for _ in range(3)])
    fresh = Repo(repo.directory)
    for obj in fresh:
        obj.weights  # noqa: B018 - load it
    del obj
    gc.collect()
    assert len(fresh._live) == 0
    assert fresh.apply(lambda m: m.layers, Selector(Model)) == [3, 3, 3]
    assert len(ids) == 3


def test_metadata_set_query_order(repo: Repo) -> None:
    models = [Model(i + 1) for i in range(6)]
    for i, model in enumerate(models):
        repo.add_object(model, metadata={"metrics": {"accuracy": i / 10}, "run": i})
    repo.add_object(Model(9))  # no metadata: sorts last
    top = repo.get(Selector(Model), order_by="metrics.accuracy", descending=True, limit=3)
    assert [m.dry_id for m in top] == [m.dry_id for m in models[::-1][:3]]
    first = repo.get(order_by="metrics.accuracy")[:2]
    assert [repo.metadata(m)["run"] for m in first] == [0, 1]
    assert repo.ids(order_by="metrics.accuracy")[-1] not in {m.dry_id for m in models}
    mid = repo.ids(where={"metrics.accuracy": Range(0.15, 0.35)})
    assert set(mid) == {models[2].dry_id, models[3].dry_id}
    repo.set_metadata(models[0], {"metrics": {"accuracy": 0.99}, "note": "best"})
    assert repo.metadata(models[0]) == {"metrics": {"accuracy": 0.99}, "run": 0, "note": "best"}
    assert repo.ids(order_by="metrics.accuracy", descending=True, limit=1) == [models[0].dry_id]
    repo.set_metadata(models[0], {"x": 1}, merge=False)
    assert repo.metadata(models[0]) == {"x": 1}
    assert repo.ids(where={"run": In(4, 5), "metrics.accuracy": Not(0.4)}) == [models[5].dry_id]
    assert repo.ids(where={"run": lambda r: r > 4}) == [models[5].dry_id]
    with pytest.raises(RepoError, match="JSON"):
        repo.add_object(Model(1), metadata={"bad": object()})


def test_save_writes_objects_changed_in_memory(repo: Repo) -> None:
    model = Model(2)
    repo.add_object(model, metadata={"epoch": 0})
    model.weights = np.ones(2)
    assert repo.save() == 1
    again = Repo(repo.directory).load(model.dry_id)
    assert again.weights.tolist() == [1.0, 1.0]
    assert repo.metadata(model) == {"epoch": 0}
    assert repo.check().ok


def test_a_save_that_failed_partway_can_be_done_again(repo: Repo) -> None:
    models = [Model(n) for n in (1, 2, 3)]
    repo.add_objects(models)
    for model in models:
        model.weights = np.full(model.layers, 2.0)
    models[2].weights = np.array([None], dtype=object)  # cannot be saved: after the others
    with pytest.raises(DrymlError, match="pickle"):
        repo.save(Selector(Model))
    models[2].weights = np.full(3, 2.0)
    # the two written before the failure are this process's versions, not another writer's
    assert repo.save(Selector(Model)) == 3
    again = Repo(repo.directory)
    assert [again.load(m.dry_id).weights.tolist() for m in models] == [
        [2.0], [2.0, 2.0], [2.0, 2.0, 2.0]]
    assert repo.check().ok


def test_saving_or_replacing_an_object_keeps_its_creation_time(repo: Repo) -> None:
    """``created`` is when the object was added: an old run saved again (or replaced) does not
    become the latest, neither in the index nor in an index rebuilt from the files."""
    import time

    old = Model(2)
    repo.add_object(old)
    created = repo.info(old)["created"]
    time.sleep(0.05)
    new = Model(3)
    repo.add_object(new)
    old.weights = np.ones(2)
    repo.save(old)
    assert repo.info(old)["created"] == created
    repo.add_object(old, metadata={"epoch": 1}, replace=True)
    assert repo.info(old)["created"] == created
    assert repo.ids(order_by="created", descending=True) == [new.dry_id, old.dry_id]
    repo.close()
    for path in repo.directory.glob(".dryml-index.sqlite*"):
        path.unlink()
    rebuilt = Repo(repo.directory)  # the files hold it too
    assert rebuilt.info(old)["created"] == pytest.approx(created, abs=1e-5)
    assert rebuilt.ids(order_by="created", descending=True) == [new.dry_id, old.dry_id]
    assert rebuilt.load(old.dry_id).weights.tolist() == [1.0, 1.0]


def test_delete(repo: Repo) -> None:
    ids = repo.add_objects([Data(i) for i in range(4)])
    assert repo.delete(Selector(Data, args=(In(0, 1),))) == 2
    assert sorted(repo.ids()) == sorted(ids[2:])
    assert not (repo.directory / f"{ids[0]}.dry").exists()
    with pytest.raises(RepoError):
        repo.delete(None)
    assert repo.check().ok


def test_nested_objects_are_saved_once_each(repo: Repo) -> None:
    shared = Data(5)
    trainable = Trainable(Model(2), shared)
    repo.add_object(trainable)
    loaded = Repo(repo.directory).load(trainable.dry_id)
    assert loaded.data.dry_id == shared.dry_id and loaded.model.weights.shape == (2,)
    assert len(repo) == 1
    assert repo.ids(Selector(Trainable, args=(Selector(Model, args=(2,)),))) == [trainable.dry_id]


def test_entries_and_info_come_from_the_index(repo: Repo) -> None:
    obj = Data(1, scale=2.0)
    repo.add_object(obj, metadata={"a": 1})
    (entry,) = repo.entries()
    assert entry == repo.info(obj.dry_id)
    assert entry["class"] == f"{__name__}:Data"
    assert entry["definition"] == obj.definition().to_dict()
    assert entry["metadata"] == {"a": 1} and entry["size"] > 0


def test_index_is_rebuilt_from_files(repo: Repo) -> None:
    ids = repo.add_objects([Trainable(Model(i + 1), Data(i)) for i in range(3)])
    expected = {i: repo.info(i)["definition"] for i in ids}
    repo.close()
    for path in repo.directory.glob(".dryml-index.sqlite*"):
        path.unlink()
    rebuilt = Repo(repo.directory)
    assert sorted(rebuilt.ids()) == sorted(ids)
    assert {i: rebuilt.info(i)["definition"] for i in ids} == expected
    assert len(rebuilt.get(Selector(Trainable, args=(Selector(Model, args=(2,)),)))) == 1


def test_reindex_keeps_metadata(repo: Repo) -> None:
    obj = Data(1)
    repo.add_object(obj, metadata={"metrics": {"accuracy": 0.5}})
    report = repo.reindex()
    assert report.indexed == 1 and report.skipped == []
    assert repo.metadata(obj) == {"metrics": {"accuracy": 0.5}}


def test_metadata_is_in_the_files_and_survives_a_lost_index(repo: Repo) -> None:
    first, second = Data(1), Data(2)
    repo.add_object(first, metadata={"metrics": {"accuracy": 0.5}})
    repo.add_object(second)
    repo.set_metadata(second, {"note": "later"})
    repo.save(second)  # writes the index's metadata into its file
    repo.close()
    for path in repo.directory.glob(".dryml-index.sqlite*"):
        path.unlink()
    rebuilt = Repo(repo.directory)
    assert rebuilt.metadata(first.dry_id) == {"metrics": {"accuracy": 0.5}}
    assert rebuilt.metadata(second.dry_id) == {"note": "later"}
    assert rebuilt.get(Selector(Data), order_by="metrics.accuracy", limit=1)[0].dry_id == \
        first.dry_id


def test_large_array_arguments_are_queryable(repo: Repo) -> None:
    big = np.arange(5000, dtype=np.float64)
    repo.add_object(Data(big))
    repo.add_object(Data(np.zeros(3)))
    repo.reindex()  # the definition is rebuilt from the file's members
    found = repo.get(Selector(Data, args=(lambda a: a.shape == (5000,),)))
    assert len(found) == 1 and found[0].n.sum() == big.sum()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_untrusted_class_is_refused_when_getting(tmp_path: Path) -> None:
    import subprocess
    import textwrap

    (tmp_path / "repo_elsewhere.py").write_text(textwrap.dedent("""
        from dryml import Object
        class Far(Object):
            def __init__(self, x):
                self.x = x
    """))
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from repo_elsewhere import Far;"
              "from dryml.repo import Repo; Repo(sys.argv[2], create=True).add_object(Far(1))")
    subprocess.run([sys.executable, "-c", script, str(tmp_path), str(tmp_path / "r")],
                   check=True)
    repo = Repo(tmp_path / "r")
    assert len(repo.ids(Selector("Far"))) == 1  # queries need no class
    from dryml.errors import UntrustedClassError

    with pytest.raises(UntrustedClassError, match="trust"):
        repo.get(Selector("Far"))


def test_lazy_objects_pickle_as_the_loaded_object(repo: Repo) -> None:
    import pickle

    model = Model(4)
    repo.add_object(model)
    lazy = Repo(repo.directory).get_one(model.dry_id)
    assert not is_loaded(lazy)
    copy = pickle.loads(pickle.dumps(lazy))
    assert type(copy) is Model and copy.weights.shape == (4,) and copy.dry_id == model.dry_id


def test_apply_shows_progress_when_asked_and_stays_quiet_on_short_runs(
        repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.add_objects([Data(i) for i in range(12)])
    assert sorted(repo.apply(lambda d: d.dry_args[0], Selector(Data), progress=True)) == list(
        range(12))
    shown = capsys.readouterr().err
    assert "dryml repo apply" in shown and "12/12" in shown
    repo.apply(lambda d: d.dry_args[0], Selector(Data, args=(3,)))  # one object: no bar
    assert "dryml repo apply" not in capsys.readouterr().err


def test_repo_and_selector_come_from_the_top_level_package() -> None:
    from dryml import Repo as TopRepo
    from dryml import Selector as TopSelector

    assert TopRepo is Repo and TopSelector is Selector


class Mean(DryTrainable):
    """A Trainable that learns the mean of x."""

    task = "regressor"

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None

    def fit(self, data: Any, valid: Any) -> None:
        self.mean = np.concatenate([np.asarray(b[0]) for b in data.numpy().batch(8)]).mean(0)

    def predict(self, x: Any) -> Any:
        return np.asarray(x) - self.mean

    def save_object_imp(self, store: Any) -> None:
        store.put("mean", self.mean)

    def load_object_imp(self, store: Any) -> None:
        self.mean = store.get("mean", None)


def test_a_lazy_trainable_answers_its_properties_from_its_file(repo: Repo) -> None:
    # A property that reads __dict__ directly (Trainable.train_state) must not run on the
    # unloaded stand-in: it answered `trained == False` for a trained model.
    model = Mean()
    model.train(NumpyDataset((np.ones((10, 2)), np.zeros(10))))
    assert model.trained
    repo.add_object(model)
    lazy = Repo(repo.directory).get_one(model.dry_id)
    assert not is_loaded(lazy)
    assert lazy.trained and lazy.train_state.status == "trained"
    assert is_loaded(lazy) and type(lazy) is Mean
    again = Repo(repo.directory).get_one(model.dry_id)
    assert again.dry_id == model.dry_id and not is_loaded(again)  # the id needs no load
