"""Search with Optuna's samplers and pruners: parity with Optuna used directly, its storage in
the Repo, pruning from per-epoch reports, multi-objective, resume after SIGKILL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

if not os.environ.get("DRYML_REQUIRE_OPTUNA"):
    pytest.importorskip("optuna")
import numpy as np
import optuna
from test_search import Toy, blobs, run_killed_then_resume

from dryml import ObjectDef
from dryml.errors import BackendUnavailableError, DrymlWarning
from dryml.models import supervised_arrays
from dryml.search import Choice, Float, Int, Search

optuna.logging.set_verbosity(optuna.logging.WARNING)


def journal(repo: Path) -> optuna.storages.JournalStorage:
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(
        JournalFileBackend(str(repo / ".dryml-search" / "optuna.journal")))


def objective_value(model: Any, data: Any) -> float:
    """A smooth function of the params (so both runs tell the sampler the same values)."""
    penalty = {"a": 0.0, "b": 0.3}[model.crash] if model.crash in ("a", "b") else 0.0
    return -((model.shift - 1.3) ** 2) - 0.1 * model.epochs - penalty


class Labelled(Toy):
    """Toy with a categorical that does not crash ("a"/"b" only label the option)."""

    def fit(self, data: Any, valid: Any) -> None:
        crash, self.crash = self.crash, "no"
        try:
            super().fit(data, valid)
        finally:
            self.crash = crash


def test_tpe_suggests_what_optuna_used_directly_suggests(tmp_path: Path) -> None:
    space = ObjectDef(Labelled, shift=Float(0.0, 4.0), epochs=Int(1, 3), crash=Choice("a", "b"))
    result = Search(space, metric=objective_value, direction="maximize",
                    repo=tmp_path / "repo", name="tpe", sampler="tpe", n_trials=14,
                    seed=7).run(blobs())

    def objective(trial: optuna.Trial) -> float:
        shift = trial.suggest_float("shift", 0.0, 4.0)
        epochs = trial.suggest_int("epochs", 1, 3)
        crash = trial.suggest_categorical("crash", ["a", "b"])
        return -((shift - 1.3) ** 2) - 0.1 * epochs - {"a": 0.0, "b": 0.3}[crash]

    direct = optuna.create_study(direction="maximize",
                                 sampler=optuna.samplers.TPESampler(seed=7))
    direct.optimize(objective, n_trials=14)
    assert [t["params"] for t in result.trials] == [t.params for t in direct.trials]
    assert result.best_value == pytest.approx(direct.best_value)
    # the study is kept inside the Repo directory
    stored = optuna.load_study(study_name="tpe", storage=journal(tmp_path / "repo"))
    assert len(stored.trials) == 14
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in stored.trials)


def test_an_optuna_sampler_instance(tmp_path: Path) -> None:
    space = ObjectDef(Toy, shift=Float(0.0, 4.0))
    result = Search(space, repo=tmp_path / "repo", name="inst", n_trials=3,
                    sampler=optuna.samplers.RandomSampler(seed=1)).run(blobs())
    direct = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    direct.optimize(lambda t: t.suggest_float("shift", 0.0, 4.0), n_trials=3)
    assert [t["params"] for t in result.trials] == [t.params for t in direct.trials]


def test_cmaes_runs_or_names_what_it_needs(tmp_path: Path) -> None:
    import importlib.util

    space = ObjectDef(Toy, shift=Float(0.0, 4.0))
    if importlib.util.find_spec("cmaes") is None:
        with pytest.raises(BackendUnavailableError, match="pip install cmaes"):
            Search(space, repo=tmp_path / "repo", name="cma", n_trials=3, sampler="cmaes")
        return
    cma = Search(space, repo=tmp_path / "repo", name="cma", n_trials=3, sampler="cmaes")
    assert len(cma.run(blobs()).trials) == 3


def test_a_median_pruner_stops_unpromising_trials_from_epoch_reports(tmp_path: Path) -> None:
    space = ObjectDef(Toy, shift=Float(0.0, 4.0), epochs=4)
    result = Search(space, repo=tmp_path / "repo", name="prune", sampler="tpe", n_trials=12,
                    seed=0, pruner=optuna.pruners.MedianPruner(n_startup_trials=3)
                    ).run(blobs())
    statuses = [t["status"] for t in result.trials]
    assert len(result.trials) == 12 and "pruned" in statuses
    for t in result.trials:
        if t["status"] == "pruned":
            assert t["last_epoch"]["val_accuracy"] == pytest.approx(-t["params"]["shift"])
            assert t["last_epoch"]["epoch"] < 4 and t["metrics"] == {}
    stored = optuna.load_study(study_name="prune", storage=journal(tmp_path / "repo"))
    assert sum(t.state == optuna.trial.TrialState.PRUNED for t in stored.trials) == \
        statuses.count("pruned")


class Unreported(Toy):
    """Trains in epochs but reports none of them (no on_epoch_end call)."""

    def fit(self, data: Any, valid: Any) -> None:
        x, y = supervised_arrays(data)
        self.centers = np.stack([x[y == c].mean(axis=0) for c in np.unique(y)]) + self.shift


def test_a_pruner_that_gets_no_epochs_says_how_a_trainable_reports_them(tmp_path: Path) -> None:
    search = Search(ObjectDef(Unreported, shift=Float(0.0, 4.0)), repo=tmp_path / "r",
                    name="quiet", sampler="tpe", n_trials=3, pruner="median")
    with pytest.warns(DrymlWarning, match=r"pruner got no epochs from trial 0 \(Unreported\)"
                      r".*its on_epoch_end\(logs\), or dryml.search.report_epoch") as seen:
        result = search.run(blobs())
    assert [t["status"] for t in result.trials] == ["complete"] * 3
    assert sum("pruner got no epochs" in str(w.message) for w in seen) == 1  # once a search


def test_a_pruner_fed_epochs_gives_no_such_warning(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DrymlWarning)
        Search(ObjectDef(Toy, shift=Float(0.0, 4.0), epochs=2), repo=tmp_path / "r",
               name="fed", sampler="tpe", n_trials=2, pruner="median").run(blobs())


def test_a_pipes_last_step_feeds_the_pruner_its_epochs(tmp_path: Path) -> None:
    """The epochs were hooked on the Pipe, which has none of its own: the pruner got none of
    its network's and warned that the trial reports none."""
    import warnings

    from dryml.models import Pipe

    space = ObjectDef(Pipe, ObjectDef(Toy), ObjectDef(Toy, shift=Float(0.0, 4.0), epochs=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DrymlWarning)
        Search(space, repo=tmp_path / "r", name="piped", sampler="tpe", n_trials=2,
               pruner="median").run(blobs())
    stored = optuna.load_study(study_name="piped", storage=journal(tmp_path / "r"))
    assert all(len(t.intermediate_values) == 2 for t in stored.trials)


@pytest.mark.parametrize("pruner", ["median", "hyperband", "asha"])
def test_pruners_by_name(tmp_path: Path, pruner: str) -> None:
    search = Search(ObjectDef(Toy, shift=Float(0.0, 4.0), epochs=3), repo=tmp_path / "r",
                    name="p", sampler="tpe", n_trials=2, pruner=pruner)
    assert len(search.run(blobs()).trials) == 2


def test_multi_objective_search_gives_the_pareto_front(tmp_path: Path) -> None:
    def shift(model: Any, data: Any) -> float:
        return float(model.shift)

    result = Search(ObjectDef(Toy, shift=Float(0.0, 4.0)), metric=["accuracy", shift],
                    direction=["maximize", "maximize"], repo=tmp_path / "repo", name="mo",
                    sampler="nsga2", n_trials=8, seed=1).run(blobs())
    front = result.pareto
    assert front
    done = [t for t in result.trials if t["status"] == "complete"]
    for t in front:  # nobody is at least as good on both and better on one
        assert not any(o["values"][0] >= t["values"][0] and o["values"][1] >= t["values"][1]
                       and o["values"] != t["values"] for o in done)


def test_a_killed_tpe_search_resumes_with_its_study(tmp_path: Path) -> None:
    trials = run_killed_then_resume(tmp_path, "tpe")
    stored = optuna.load_study(study_name="k", storage=journal(tmp_path / "repo"))
    states = {t.number: t.state for t in stored.trials}
    assert all(states[t["number"]] == optuna.trial.TrialState.COMPLETE
               for t in trials if t["status"] == "complete")
    assert optuna.trial.TrialState.RUNNING not in states.values()


def test_the_study_can_live_in_sqlite(tmp_path: Path) -> None:
    Search(ObjectDef(Toy, shift=Float(0.0, 4.0)), repo=tmp_path / "repo", name="sq",
           sampler="tpe", n_trials=2, storage="sqlite").run(blobs())
    storage = tmp_path / "repo" / ".dryml-search" / "optuna.sqlite"
    stored = optuna.load_study(study_name="sq", storage=f"sqlite:///{storage}")
    assert len(stored.trials) == 2


def test_a_resumed_seeded_tpe_search_does_not_repeat_its_first_trials(tmp_path: Path) -> None:
    """Found by review: the resume made the seeded sampler anew, and TPE's random start-up
    drew trials 0-2 again as trials 3-5."""
    space = ObjectDef(Labelled, shift=Float(0.0, 4.0), epochs=Int(1, 3), crash=Choice("a", "b"))

    def run(n: int) -> list[dict[str, Any]]:
        return Search(space, metric=objective_value, direction="maximize",
                      repo=tmp_path / "repo", name="r", sampler="tpe", n_trials=n,
                      seed=3).run(blobs()).trials

    first = [t["params"] for t in run(3)]
    resumed = [t["params"] for t in run(6)]
    assert resumed[:3] == first and len(resumed) == 6
    assert not any(p in first for p in resumed[3:])
    again = Search(space, metric=objective_value, direction="maximize", repo=tmp_path / "two",
                   name="r", sampler="tpe", n_trials=3, seed=3).run(blobs()).trials
    assert [t["params"] for t in again] == first  # a seed still gives the same search


def test_a_resumed_search_with_a_given_optuna_sampler_does_not_repeat_its_first_trials(
        tmp_path: Path) -> None:
    """Found by review: a sampler instance made again for the resume (as a script does) drew
    its first trials again; dryml cannot know its seed, so it reseeds it at random."""
    space = ObjectDef(Labelled, shift=Float(0.0, 4.0), epochs=Int(1, 3), crash=Choice("a", "b"))

    def run(n: int) -> list[dict[str, Any]]:
        return Search(space, metric=objective_value, direction="maximize",
                      repo=tmp_path / "repo", name="r",
                      sampler=optuna.samplers.TPESampler(seed=3), n_trials=n
                      ).run(blobs()).trials

    first = [t["params"] for t in run(3)]
    resumed = [t["params"] for t in run(6)]
    assert resumed[:3] == first and len(resumed) == 6
    assert not any(p in first for p in resumed[3:])


def test_a_resume_with_another_storage_or_a_lost_study_is_refused(tmp_path: Path) -> None:
    """Found by review: resumed with storage='sqlite', the search got a fresh study numbered
    from 0, and its new trials were trained, stored and left out of the results."""
    from dryml.errors import ConfigurationError

    space = ObjectDef(Toy, shift=Float(0.0, 4.0))
    Search(space, repo=tmp_path / "repo", name="s", sampler="tpe", n_trials=2).run(blobs())
    with pytest.raises(ConfigurationError, match="with another storage"):
        Search(space, repo=tmp_path / "repo", name="s", sampler="tpe", n_trials=4,
               storage="sqlite").run(blobs())
    (tmp_path / "repo" / ".dryml-search" / "optuna.journal").unlink()
    with pytest.raises(ConfigurationError, match="holds 0 trials but the repository records "
                                                 "trial 1"):
        Search(space, repo=tmp_path / "repo", name="s", sampler="tpe", n_trials=4).run(blobs())


def test_a_pruner_watching_a_key_the_model_never_logs_fails_the_trial_saying_so(
        tmp_path: Path) -> None:
    """Found by review: the reporter skipped epochs without the monitor, so a pruner with
    the wrong key (XGBoost logs val_logloss, not val_log_loss) silently never pruned."""
    result = Search(ObjectDef(Toy, shift=Float(0.0, 4.0), epochs=2), repo=tmp_path / "repo",
                    name="p", sampler="tpe", pruner="median", monitor="val_auc",
                    n_trials=5).run(blobs())
    # every trial would fail alike: the search stops at the first, saying why
    assert [t["status"] for t in result.trials] == ["failed"]
    assert "the pruner watches 'val_auc', which this model's epochs do not log (they log " \
           "epoch, val_accuracy); pass Search(..., monitor=NAME)" in result.trials[0]["error"]
    assert result.stopped is not None and result.stopped.startswith(
        "stopped: the pruner watches 'val_auc'")


class ValidatedToy(Toy):
    """Logs ``val_accuracy`` only when given validation data, as the torch and Keras
    Trainables do (without a validation_split of their own they validate on nothing)."""

    def fit(self, data: Any, valid: Any) -> None:
        x, y = supervised_arrays(data)
        centers = np.stack([x[y == c].mean(axis=0) for c in np.unique(y)])
        for epoch in range(self.epochs):
            self.centers = centers + self.shift * (self.epochs - epoch) / self.epochs
            logs = {"epoch": epoch + 1, "loss": self.shift}
            if valid is not None:
                logs["val_accuracy"] = -self.shift
            self.train_state.history.append(logs)
            self.on_epoch_end(dict(logs))


def test_a_pruner_gets_validation_epochs_from_a_model_without_a_split(tmp_path: Path) -> None:
    """Search trained such a model on the training rows alone, so its epochs logged no
    ``val_accuracy`` and every trial failed ("the pruner watches 'val_accuracy'"); it now
    validates on the scored rows, as under Ray Tune."""
    result = Search(ObjectDef(ValidatedToy, shift=Float(0.0, 4.0), epochs=4),
                    repo=tmp_path / "repo", name="p", sampler="tpe", n_trials=8, seed=0,
                    pruner=optuna.pruners.MedianPruner(n_startup_trials=3)).run(blobs())
    statuses = [t["status"] for t in result.trials]
    assert "failed" not in statuses and "pruned" in statuses, result.trials
    # without a pruner it still trains on the training rows alone
    plain = Search(ObjectDef(ValidatedToy, shift=Float(0.0, 4.0), epochs=2),
                   repo=tmp_path / "repo", name="q", n_trials=1).run(blobs())
    assert "val_accuracy" not in plain.best.train_state.history[-1]


class TrainingAccuracyToy(Toy):
    """Logs a training ``accuracy`` (0.99) each epoch, as a Keras model does."""

    def fit(self, data: Any, valid: Any) -> None:
        x, y = supervised_arrays(data)
        centers = np.stack([x[y == c].mean(axis=0) for c in np.unique(y)])
        for epoch in range(self.epochs):
            self.centers = centers + self.shift * (self.epochs - epoch) / self.epochs
            logs = {"epoch": epoch + 1, "accuracy": 0.99, "val_accuracy": -self.shift}
            self.train_state.history.append(logs)
            self.on_epoch_end(dict(logs))


def test_a_pruned_trials_epoch_logs_are_not_read_as_its_score(tmp_path: Path) -> None:
    """A pruned trial kept its last epoch's logs as its metrics, where a Keras model's
    training accuracy (0.99) read as the search's accuracy: `repo ls --order-by
    metrics.accuracy`, to_frame and plot.compare put pruned trials above the best one."""
    from dryml.repo import Repo

    result = Search(ObjectDef(TrainingAccuracyToy, shift=Float(0.0, 4.0), epochs=4),
                    repo=tmp_path / "repo", name="p", sampler="tpe", n_trials=10, seed=0,
                    pruner=optuna.pruners.MedianPruner(n_startup_trials=3)).run(blobs())
    pruned = [t for t in result.trials if t["status"] == "pruned"]
    assert pruned and all(t["metrics"] == {} and t["last_epoch"]["accuracy"] == 0.99
                          for t in pruned)
    top = Repo(tmp_path / "repo").entries(where={"search": "p"},
                                          order_by="metrics.accuracy", descending=True)[0]
    assert top["metadata"]["status"] == "complete"
    assert top["metadata"]["metrics"]["accuracy"] == result.best_value
    frame = result.to_frame()
    assert frame["metrics.accuracy"].max() == result.best_value
    assert set(frame[frame["status"] == "pruned"]["last_epoch.accuracy"]) == {0.99}
    # a search an earlier dryml recorded (epoch logs as a pruned trial's metrics) reads so too
    from dryml.search._store import load_trials

    repo = Repo(tmp_path / "repo")
    for t in pruned:
        meta = {k: v for k, v in repo.metadata(t["dry_id"]).items() if k != "last_epoch"}
        repo.set_metadata(t["dry_id"], {**meta, "metrics": t["last_epoch"]}, merge=False)
    assert all(t["metrics"] == {} and t["last_epoch"]["accuracy"] == 0.99
               for t in load_trials(repo, "p") if t["status"] == "pruned")


class LossToy(Toy):
    """Toy whose epochs also log a loss: ``val_loss`` rises as ``val_accuracy`` falls."""

    def on_epoch_end(self, logs: dict[str, float]) -> None:
        logs["val_loss"] = -logs["val_accuracy"]


def _pruned(result: Any) -> list[tuple[int, float]]:
    return [(t["number"], t["params"]["shift"]) for t in result.trials
            if t["status"] == "pruned"]


def test_a_loss_monitor_prunes_the_trials_an_accuracy_monitor_prunes(tmp_path: Path) -> None:
    """Found by review: the pruner ranks reports in the study's direction (accuracy: higher is
    better), so a val_loss monitor made it stop the trials with the lowest loss, the best
    ones. A monitor that improves the other way is now reported negated: watching val_loss
    prunes exactly what watching val_accuracy does."""
    def search(monitor: str, name: str) -> Any:
        return Search(ObjectDef(LossToy, shift=Float(0.0, 4.0), epochs=4),
                      repo=tmp_path / name, name="p", sampler="tpe", n_trials=12, seed=0,
                      monitor=monitor, pruner=optuna.pruners.MedianPruner(n_startup_trials=3)
                      ).run(blobs())

    by_accuracy = _pruned(search("val_accuracy", "acc"))
    assert by_accuracy  # the comparison means something
    assert _pruned(search("val_loss", "loss")) == by_accuracy


def test_the_chosen_pruner_decides(tmp_path: Path) -> None:
    """Found by review: each trial's worker opened the study without the search's pruner, so
    Optuna's default MedianPruner pruned trials of pruner="none" or of a pruner whose own
    settings would not prune."""
    for i, pruner in enumerate(["none", optuna.pruners.MedianPruner(n_startup_trials=100)]):
        result = Search(ObjectDef(Toy, shift=Float(0.0, 4.0), epochs=4),
                        repo=tmp_path / f"r{i}", name="p", sampler="tpe", n_trials=12, seed=0,
                        pruner=pruner).run(blobs())
        assert [t["status"] for t in result.trials] == ["complete"] * 12


def test_a_pruner_needs_one_metric_and_a_monitor_direction_it_can_tell(tmp_path: Path) -> None:
    from dryml.errors import ConfigurationError

    space = ObjectDef(Toy, shift=Float(0.0, 4.0), epochs=3)
    with pytest.raises(ConfigurationError, match="Optuna does not prune a search of 2"):
        Search(space, metric=["accuracy", "log_loss"], repo=tmp_path / "r", name="p",
               sampler="tpe", n_trials=2, pruner="median")
    with pytest.raises(ConfigurationError, match="monitor_direction='minimize' or 'maximize'"):
        Search(space, repo=tmp_path / "r", name="p", sampler="tpe", n_trials=2,
               pruner="median", monitor="val_wer")
    made = Search(space, repo=tmp_path / "r", name="p", sampler="tpe", n_trials=2,
                  pruner="median", monitor="val_wer", monitor_direction="minimize")
    assert made.monitor_direction == "minimize"
    assert Search(space, repo=tmp_path / "r", name="p", sampler="tpe", n_trials=2,
                  pruner="median", monitor="val_logloss").monitor_direction == "minimize"


def test_optunas_grid_sampler_ends_the_search_when_its_grid_is_used_up(tmp_path: Path) -> None:
    """Found by review: Optuna's GridSampler calls study.stop() once its grid is used up,
    which outside study.optimize raised a RuntimeError out of Search.run."""
    result = Search(ObjectDef(Toy, shift=Choice(0.0, 1.0)), repo=tmp_path / "repo", name="g",
                    sampler=optuna.samplers.GridSampler({"shift": [0.0, 1.0]}), n_trials=5,
                    progress=False).run(blobs())
    assert sorted((t["params"]["shift"], t["status"]) for t in result.trials) == [
        (0.0, "complete"), (1.0, "complete")]
