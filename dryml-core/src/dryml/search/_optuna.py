"""Optuna's samplers and pruners through its ask/tell interface (``dryml-core[optuna]``).

Each marker becomes the Optuna distribution of the same range (``trial.suggest_float``,
``suggest_int``, ``suggest_categorical`` on the Choice's labels), so a sampler and seed give
the same suggestions as Optuna used directly. The study lives inside the Repo directory, so
a killed search resumes with the sampler's whole history: by default in Optuna's journal
storage (``.dryml-search/optuna.journal``, an append-only log that is safe across processes
and crashes, ~15 ms per trial), or with ``storage="sqlite"`` in Optuna's SQLite storage
(``.dryml-search/optuna.sqlite``; Optuna's RDB storage costs ~0.3 s per TPE trial on a small
machine, which dominates short trials).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dryml.errors import BackendUnavailableError, ConfigurationError
from dryml.search._markers import ChoiceSpec, NumberSpec
from dryml.search._report import MonitorMissingError, TrialPruned
from dryml.search._samplers import Asked, TrialInfo
from dryml.search._space import Space

__all__ = ["OptunaSampler", "TrialPruned", "cmaes", "gp", "import_optuna", "make_pruner",
           "nsga2", "suggest", "tpe"]


def import_optuna() -> Any:
    """``optuna``, or BackendUnavailableError naming the extra to install."""
    try:
        import optuna
    except ImportError as exc:
        raise BackendUnavailableError(
            "this sampler or pruner needs Optuna: pip install 'dryml-core[optuna]'") from exc
    return optuna


def suggest(trial: Any, name: str, spec: NumberSpec | ChoiceSpec) -> Any:
    """Ask an Optuna trial for a marker's value (the same distribution as the marker)."""
    if isinstance(spec, ChoiceSpec):
        return trial.suggest_categorical(name, list(spec.labels))
    if spec.kind == "int":
        return trial.suggest_int(name, int(spec.low), int(spec.high), step=int(spec.step or 1),
                                 log=spec.log)
    return trial.suggest_float(name, float(spec.low), float(spec.high), step=spec.step,
                               log=spec.log)


def open_storage(kind: str, state_dir: Path) -> Any:
    """Optuna storage of ``kind`` ("journal" or "sqlite") in ``state_dir``."""
    optuna = import_optuna()
    if kind == "sqlite":
        return f"sqlite:///{Path(state_dir) / 'optuna.sqlite'}"
    if kind != "journal":
        raise ConfigurationError(f"storage is 'journal' or 'sqlite', got {kind!r}")
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(
        JournalFileBackend(str(Path(state_dir) / "optuna.journal")))


def make_pruner(pruner: Any) -> Any:
    """An Optuna pruner from a name ("median", "hyperband", "asha"/"successive_halving",
    "none") or an ``optuna.pruners.BasePruner`` instance."""
    optuna = import_optuna()
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    names = {"median": optuna.pruners.MedianPruner,
             "hyperband": optuna.pruners.HyperbandPruner,
             "asha": optuna.pruners.SuccessiveHalvingPruner,
             "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
             "none": optuna.pruners.NopPruner}
    if pruner not in names:
        raise ConfigurationError(f"unknown pruner {pruner!r}; the known ones are "
                                 f"{', '.join(sorted(names))}, or an Optuna pruner instance")
    return names[pruner]()


class OptunaSampler:
    """A dryml sampler driving an Optuna study (any ``optuna.samplers.BaseSampler``)."""

    def __init__(self, sampler: Any, reseed: Callable[[int], Any] | None = None) -> None:
        self.optuna_sampler = sampler
        self.pruner: Any = None
        self.storage_kind = "journal"
        #: the sampler stopped the study (it has nothing left to suggest)
        self.exhausted = False
        #: makes the sampler again from a seed, for a resume of a seeded search (see start)
        self.reseed = reseed

    def set_pruner(self, pruner: Any) -> None:
        """Use an Optuna pruner (name or instance, see :func:`make_pruner`)."""
        self.pruner = make_pruner(pruner)

    def start(self, space: Space, directions: list[str], name: str, state_dir: Path,
              history: list[TrialInfo]) -> None:
        optuna = import_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space, self.state_dir = space, Path(state_dir)
        self.exhausted = False
        self.study = optuna.create_study(
            storage=open_storage(self.storage_kind, self.state_dir), study_name=name,
            directions=directions,
            sampler=self.optuna_sampler, pruner=self.pruner, load_if_exists=True)
        held = len(self.study.trials)
        last = max((t.number for t in history), default=-1)
        if last >= held:
            raise ConfigurationError(
                f"the Optuna study of search {name!r} holds {held} trials but the repository "
                f"records trial {last}: its {self.storage_kind} "
                f"storage in {self.state_dir} was replaced or removed. Resume with the storage "
                "it was made with, or run the search under another name")
        if held and self.reseed is not None:
            # A seeded sampler made anew draws its first trials again: resumed after 3
            # trials, TPE's random start-up repeated trials 0-2 as 3-5. Its seed goes on
            # from the trials the study holds instead (the same for every resume there).
            self.optuna_sampler = self.study.sampler = self.reseed(held)
        elif held and callable(getattr(self.optuna_sampler, "reseed_rng", None)):
            # The caller's own sampler instance: its seed is not known here, so it goes on
            # from a random one (Optuna's public reseed), which at least draws no trial again.
            self.optuna_sampler.reseed_rng()
        known = {t.number: t for t in history}
        running = optuna.trial.TrialState.RUNNING
        for frozen in self.study.get_trials(deepcopy=False, states=(running,)):
            info = known.get(frozen.number)
            if info is not None and info.status == "complete" and info.values:
                self.study.tell(frozen.number, info.values)
            elif info is not None and info.status == "pruned":
                self.study.tell(frozen.number, state=optuna.trial.TrialState.PRUNED)
            else:
                self.study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)

    def ask(self) -> Asked | None:
        if self.exhausted:
            return None
        trial = self.study.ask()
        definition, params = self.space.sample(lambda name, spec: suggest(trial, name, spec))
        return Asked(trial.number, params, definition, trial)

    def tell(self, asked: Asked, status: str, values: list[float] | None) -> None:
        optuna = import_optuna()
        states = optuna.trial.TrialState
        try:
            if status == "complete" and values is not None:
                self.study.tell(asked.handle, values)
            else:
                self.study.tell(asked.handle, state=states.PRUNED if status == "pruned"
                                else states.FAIL)
        except RuntimeError as exc:
            # A sampler that has nothing left to suggest (Optuna's GridSampler, its grid used
            # up) calls study.stop(), which outside study.optimize raises this after the
            # trial's state was stored: the search has ended (otherwise a traceback)
            if "Study.stop" not in str(exc):
                raise
            self.exhausted = True

    def reporter_args(self, asked: Asked) -> dict[str, Any] | None:
        """What a worker needs to report epochs of this trial to the study (None: no pruner)."""
        if self.pruner is None:
            return None
        return {"storage": self.storage_kind, "dir": str(self.state_dir),
                "study": self.study.study_name, "trial_id": asked.handle._trial_id,
                "pruner": self.pruner}


def worker_reporter(args: dict[str, Any], monitor: str, negate: bool = False) -> Any:
    """In the worker: a reporter that sends ``logs[monitor]`` (negated with ``negate``, for a
    monitor that improves the other way than the study) to the Optuna trial, whose
    ``should_prune`` asks the search's own pruner."""
    optuna = import_optuna()
    # the search's pruner: load_study without one gave Optuna's default MedianPruner, which
    # pruned trials of pruner="none" or of a pruner's own settings
    study = optuna.load_study(study_name=args["study"], pruner=args.get("pruner"),
                              storage=open_storage(args["storage"], Path(args["dir"])))
    trial = optuna.trial.Trial(study, args["trial_id"])

    def report(step: int, logs: dict[str, float]) -> bool:
        if monitor not in logs:  # the pruner would never prune, and nobody would know
            raise MonitorMissingError(
                f"the pruner watches {monitor!r}, which this model's epochs do not log (they "
                f"log {', '.join(sorted(logs)) or 'nothing'}); pass Search(..., monitor=NAME) "
                "with one of them")
        value = float(logs[monitor])
        trial.report(-value if negate else value, step)
        return bool(trial.should_prune())

    return report


def _sampler(cls_name: str, seed: int | None, needs: tuple[str, ...] = (),
             **kwargs: Any) -> OptunaSampler:
    optuna = import_optuna()
    import importlib.util

    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailableError(
            f"Optuna's {cls_name} needs {', '.join(missing)}: pip install {' '.join(missing)}")
    make = getattr(optuna.samplers, cls_name)
    if seed is None:
        return OptunaSampler(make(seed=None, **kwargs))
    return OptunaSampler(make(seed=seed, **kwargs), reseed=lambda more: make(
        seed=int(np.random.SeedSequence([seed, more]).generate_state(1)[0]), **kwargs))


def tpe(seed: int | None = None) -> OptunaSampler:
    """Optuna's TPE sampler."""
    return _sampler("TPESampler", seed)


def cmaes(seed: int | None = None) -> OptunaSampler:
    """Optuna's CMA-ES sampler (numeric parameters)."""
    return _sampler("CmaEsSampler", seed, ("cmaes",))


def nsga2(seed: int | None = None) -> OptunaSampler:
    """Optuna's NSGA-II sampler (multi-objective)."""
    return _sampler("NSGAIISampler", seed)


def gp(seed: int | None = None) -> OptunaSampler:
    """Optuna's Gaussian-process sampler (needs torch and scipy in the search process)."""
    return _sampler("GPSampler", seed, ("scipy", "torch"))
