"""``Search``: run a sampler over a space, train every trial in its framework's context, keep
every trial in a Repo, resume after a crash."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import math
import signal
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dryml._objectdef import ObjectDef
from dryml.context._executor import chosen_executor, executor_names, get_executor, using_executor
from dryml.errors import ConfigurationError, DrymlError, DrymlWarning
from dryml.models._trainable import frameworks_of
from dryml.search import _store
from dryml.search._result import SearchResult, rank_key
from dryml.search._samplers import FINISHED, Asked, TrialInfo, get_sampler
from dryml.search._space import Space
from dryml.search._trial import monitor_direction_of, resolve_metrics, train_and_score

__all__ = ["Search"]

_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _trainable_defs(space: Space) -> list[ObjectDef]:
    from dryml.search._markers import ChoiceSpec, marker_spec

    spec = marker_spec(space.definition)
    if isinstance(spec, ChoiceSpec):
        return list(spec.options)
    return [space.definition]


class Search:
    """A hyperparameter search over a definition with markers.

    ``space``: an ObjectDef of a Trainable (or a Choice of them) with ``Float``/``Int``/
    ``Choice`` markers in its arguments. ``metric``: a ``dryml.metrics`` name or a callable
    ``metric(model, dataset) -> float``, or a list of them (multi-objective, with one
    ``direction`` each; default: from the metric's name). ``repo``: a Repo or a directory
    (created when missing) that keeps every trial. ``name``: the search's name in the repo;
    running a search with the same name again resumes it. ``sampler``: "grid", "random",
    "tpe", "cmaes", "nsga2", "gp" (the last four need ``dryml-core[optuna]``) or an Optuna
    sampler. ``n_trials`` counts finished trials (complete or pruned); ``timeout`` stops
    starting trials after that many seconds; ``parallel`` runs that many trials at once;
    ``folds`` scores by k-fold cross-validation; ``keep``: which trained models stay in the
    repo ("all", "best", "none"; metadata is kept either way); ``max_failures``: stop after
    that many failed trials in one run. ``context_reqs`` gives each framework's trials their
    resources, e.g. ``{"torch": {"gpu/0": 0.5}}`` (two torch trials share GPU 0). With a
    ``pruner`` ("median", "hyperband", "asha" or an Optuna pruner), each epoch's ``monitor``
    value (default ``val_<metric>``) is reported and unpromising trials stop early;
    ``monitor_direction`` ("maximize"/"minimize") says which way the monitor improves, where
    its name does not (``val_loss``, ``val_logloss``, ``val_rmse``... minimize; ``val_<metric>``
    goes the first metric's way). ``storage``: where an Optuna study is kept in the repo
    directory, "journal" (Optuna's journal file, default) or "sqlite". ``executor``: where
    trials train, "local" (this machine's workers) or "ray" (a Ray cluster, see
    docs/cluster.md); default: the process's executor (``dryml.context.configure``,
    ``DRYML_EXECUTOR``). The Repo stays here either way: trained models come back as ``.dry``
    bytes and this process writes them. The search draws its line (trials done, best value)
    on the caller's progress display (docs/progress.md) unless ``progress=False``; the
    leaderboard is printed at the end with ``progress=True``, or by default when stderr is a
    terminal.
    """

    def __init__(self, space: Any, *, metric: Any = "accuracy", direction: Any = None,
                 repo: Any, name: str, sampler: Any = "random", pruner: Any = None,
                 n_trials: int | None = None, timeout: float | None = None,
                 parallel: int = 1, seed: int | None = 0, folds: int | None = None,
                 keep: str = "all", max_failures: int | None = None,
                 progress: bool | None = None, context_reqs: dict[str, Any] | None = None,
                 monitor: str | None = None, storage: str = "journal",
                 executor: str | None = None, monitor_direction: str | None = None) -> None:
        from dryml.models import Trainable
        from dryml.repo import Repo

        self.space = space if isinstance(space, Space) else Space(space)
        for definition in _trainable_defs(self.space):
            if not issubclass(definition.cls, Trainable):
                raise ConfigurationError(
                    f"a search trains Trainables; {definition.cls.__qualname__} is not one")
        if not name or not set(name) <= _NAME_OK:
            raise ConfigurationError(f"a search name is letters, digits, '-', '_' and '.', "
                                     f"got {name!r}")
        # checked before anything runs: a bad seed failed in run() after the settings were
        # written under the name, so the fixed search was refused as "another seed"
        seed = _whole("seed", seed, 0, 2**63 if sampler in ("random", "grid") else 2**32)
        n_trials = _whole("n_trials", n_trials, 1)
        max_failures = _whole("max_failures", max_failures, 1)
        parallel = _whole("parallel", parallel, 1, none=False)
        folds = _whole("folds", folds, 2)
        self.metrics, self.directions = resolve_metrics(metric, direction)
        self.monitor = monitor or f"val_{self.metrics[0][0]}"
        self.monitor_direction = monitor_direction_of(
            self.monitor, monitor_direction, self.metrics[0][0], self.directions[0],
            needed=pruner is not None)
        self.sampler_name, self.sampler = get_sampler(sampler, seed)
        if hasattr(self.sampler, "storage_kind"):
            if storage not in ("journal", "sqlite"):
                raise ConfigurationError(f"storage is 'journal' or 'sqlite', got {storage!r}")
            self.sampler.storage_kind = storage
        if pruner is not None:
            if not hasattr(self.sampler, "set_pruner"):
                raise ConfigurationError("pruners need an Optuna sampler (tpe, cmaes, ...)")
            if len(self.directions) > 1:  # else every trial failed in Optuna's report
                raise ConfigurationError(
                    "pruners stop trials on one metric: Optuna does not prune a search of "
                    f"{len(self.directions)} metrics; leave pruner out, or search one metric")
            self.sampler.set_pruner(pruner)
        self._unreported_warned = False
        if self.sampler_name == "grid":
            self.space.check_grid()
            n_trials = len(self.space.grid()) if n_trials is None else n_trials
        if n_trials is None and timeout is None:
            raise ConfigurationError("give n_trials (or a timeout) for a search")
        if keep not in ("all", "best", "none"):
            raise ConfigurationError(f"keep is 'all', 'best' or 'none', got {keep!r}")
        self.repo = repo if isinstance(repo, Repo) else Repo(Path(repo), create=True)
        self.name, self.n_trials, self.timeout = name, n_trials, timeout
        self.parallel, self.seed, self.folds, self.keep = parallel, seed, folds, keep
        self.max_failures = max_failures if max_failures is not None else max(
            10, n_trials or 10)
        self.progress, self.context_reqs = progress, context_reqs
        if executor is not None and executor not in executor_names():
            raise ConfigurationError(f"unknown executor {executor!r}; the known ones are "
                                     f"{', '.join(executor_names())}")
        self.executor = executor
        self._lock = threading.Lock()

    # -- settings and resume ------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {"space": self.space.to_dict(), "sampler": self.sampler_name,
                "metrics": [n for n, _ in self.metrics], "directions": self.directions,
                "seed": self.seed, "folds": self.folds, "n_trials": self.n_trials,
                "storage": getattr(self.sampler, "storage_kind", None)}

    def trials(self) -> list[dict[str, Any]]:
        """Every trial recorded so far (from the Repo)."""
        return _store.load_trials(self.repo, self.name)

    def result(self, stopped: str | None = None) -> SearchResult:
        """The search's result as the Repo holds it now."""
        return SearchResult(self.repo, self.name, self.trials(), self.directions,
                            [n for n, _ in self.metrics], stopped)

    # -- running ------------------------------------------------------------------------------
    def run(self, train: Any, valid: Any = None) -> SearchResult:
        """Run (or resume) the search on ``train``, scoring on ``valid`` (default: the
        ``validation_split`` of the definition's TrainSpec, else a 20% split)."""
        from dryml.search._data import make_folds, split_for_scoring

        if self.folds and valid is not None:  # otherwise dropped silently
            raise ConfigurationError(
                f"folds={self.folds} scores each trial on its own folds of the training data, "
                "so a validation Dataset would go unused: pass either folds or valid")
        state = _store.state_dir(self.repo.directory)
        if not (state / f"{self.name}.json").exists():
            _store.existing_trials_without_settings(self.repo, self.name)
        _store.write_settings(state, self.name, self._settings())
        rows = self.trials()
        _store.mark_running_failed(self.repo, rows)
        if self.folds:
            folds = make_folds(train, self.folds, self.seed or 0)
        else:
            folds = None
            if valid is None:
                train, valid = split_for_scoring(self.space, train, self.seed or 0)
        history = [TrialInfo(r["number"], r["status"], r["params"], r["values"]) for r in rows]
        self.sampler.start(self.space, self.directions, self.name, state, history)
        self._best = self._initial_best(rows)
        self._halt: str | None = None  # why the search must start no more trials
        self._finished = sum(r["status"] in FINISHED for r in rows)
        return self._loop(train, valid, folds, rows)

    def _initial_best(self, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        done = [r for r in rows if r["status"] == "complete" and r["values"]]
        if not done:
            return None
        return min(done, key=lambda r: rank_key(r["values"], self.directions))

    def _loop(self, train: Any, valid: Any, folds: Any, rows: list[dict[str, Any]]
              ) -> SearchResult:
        from dryml import progress

        start = time.monotonic()
        failures, stopped = 0, None
        target = self.n_trials
        show = sys.stderr.isatty() if self.progress is None else self.progress
        # the search's line on the caller's display; each trial's model has its own line
        bar = progress.track(f"search {self.name}", framework=self.sampler_name,
                             total=target, unit="trial",
                             initial=min(self._finished, target or 0)
                             ) if self.progress is not False else None
        in_flight: dict[cf.Future[Any], tuple[Asked, Any]] = {}
        records: list[tuple[Any, dict[str, Any]]] = []
        exhausted = False
        pool = cf.ThreadPoolExecutor(self.parallel, thread_name_prefix="dryml-search")
        try:
            while True:
                while (len(in_flight) < self.parallel and not exhausted
                       and (target is None or self._finished + len(in_flight) < target)
                       and (self.timeout is None or time.monotonic() - start < self.timeout)
                       and failures < self.max_failures and self._halt is None):
                    asked = self.sampler.ask()
                    if asked is None:
                        exhausted = True
                        break
                    model = self._begin(asked)
                    if model is None:
                        failures += 1
                        continue
                    # the running record is written while the worker trains (a trial killed
                    # before it exists has nothing to resume: its sampler slot is failed)
                    running = self._meta(asked, model, status="running")
                    record = _untrained(model.definition(), model.dry_id)
                    with _interrupt_deferred():  # a trial in flight is in both or neither
                        future = pool.submit(self._train, model, train, valid, self.metrics,
                                             folds, self._report_args(asked),
                                             call_context_reqs=self._reqs(model))
                        records.append((record, running))
                        in_flight[future] = (asked, model)
                if records:  # after every new trial was handed to its worker
                    with _interrupt_deferred(), self._lock:
                        self.repo.add_objects([r for r, _ in records],
                                              metadata=[m for _, m in records])
                        records.clear()
                if not in_flight:
                    break
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    best = self._best
                    # recorded and told to the sampler whole, or (Ctrl-C before) left to
                    # _interrupt: never half, which left the trial "running" for good
                    with _interrupt_deferred():
                        asked, model = in_flight[future]
                        if not self._finish(asked, model, future):
                            failures += 1
                        del in_flight[future]
                    if bar is not None:
                        self._show(bar, best)
            if self._halt is not None:
                stopped = f"stopped: {self._halt}"
            elif failures >= self.max_failures:
                stopped = f"stopped after {failures} failed trials (max_failures)"
        except KeyboardInterrupt:
            stopped = "interrupted (Ctrl-C)"
            self._interrupt(in_flight, records)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if bar is not None:
                bar.close(stopped)
        result = self.result(stopped)
        if show:
            print(result.leaderboard(), file=sys.stderr)
            if stopped:
                print(f"search {self.name!r}: {stopped}", file=sys.stderr)
        return result

    def _show(self, bar: Any, best_before: dict[str, Any] | None) -> None:
        """The search's line after a trial ended: trials finished and the best value; a
        status line when the trial is the new best."""
        best = self._best
        metric = self.metrics[0][0]
        bar.update(self._finished, None if best is None else {
            f"best {metric}": best["values"][0], "best trial": best["number"]})
        if best is not None and best is not best_before:
            bar.status(f"trial {best['number']} is the best so far: {metric}="
                       f"{best['values'][0]:.4g} ({best['dry_id'][:8]})")

    def _train(self, *args: Any, **kwargs: Any) -> Any:
        """One trial's training, on this search's executor (in a thread of the loop)."""
        with using_executor(self.executor):
            return train_and_score(*args, **kwargs)

    def _report_args(self, asked: Asked) -> dict[str, Any] | None:
        """What the trial's worker needs to report its epochs to the pruner (None: no pruner).
        An executor that runs trials on other machines (``ray``) offers a relay on this one,
        so the pruner's files beside the Repo are never opened elsewhere."""
        args = getattr(self.sampler, "reporter_args", None)
        optuna = args(asked) if args is not None else None
        if optuna is None:
            return None
        # the pruner ranks reports in the study's direction (the first metric's): a monitor
        # that goes the other way (val_loss for accuracy) is reported negated, else the
        # pruner would stop the best trials
        report: dict[str, Any] = {"optuna": optuna, "monitor": self.monitor,
                                  "negate": self.monitor_direction != self.directions[0]}
        with using_executor(self.executor):
            name, options = chosen_executor()
        relay = getattr(get_executor(name, options), "report_relay", None)
        if relay is not None:
            report["relay"] = relay()
        return report

    def _reqs(self, model: Any) -> dict[str, Any] | None:
        """The trial's worker: the frameworks of the model and of the Trainables in it (a
        Pipe of scikit-learn steps trains them in one 'sklearn' worker: in a 'default'
        worker every step refused to train, and every trial failed)."""
        frameworks = frameworks_of(model) or {type(model).dry_framework}
        return {fw: dict((self.context_reqs or {}).get(fw, {})) for fw in sorted(frameworks)}

    def _meta(self, asked: Asked, model: Any, **fields: Any) -> dict[str, Any]:
        return {"search": self.name, "trial": asked.number, "params": asked.params,
                "framework": _framework_label(model) if model is not None else None,
                "metrics": {}, "values": None, "seconds": None, "error": None,
                "kept": False, **fields}

    def _trial_definition(self, asked: Asked) -> Any:
        """The trial's definition; in a seeded search its objects get ids derived from the
        search's name, seed and trial number, so that ``TrainSpec(seed="auto")`` (a seed from
        the trained object's id) trains them the same way in every run of the search
        (otherwise two runs of one seeded search would score the same parameters
        differently). Ids the space gives are kept: they share objects."""
        definition = asked.definition
        if self.seed is None:
            return definition
        definition = definition.copy()
        _derive_ids(definition, f"dryml-search:{self.name}:{self.seed}:{asked.number}", [0])
        return definition

    def _begin(self, asked: Asked) -> Any:
        """Build the trial's model and record it as running (None when it cannot be built)."""
        try:
            model = self._trial_definition(asked).build()
        except Exception as exc:  # noqa: BLE001 - a bad sampled value fails the trial only
            record = _store.TrialRecord(self.name, asked.number)
            error = f"building the model failed: {type(exc).__name__}: {exc}"
            with self._lock:
                self.repo.add_object(record, metadata=self._meta(
                    asked, None, status="failed", error=error))
            self.sampler.tell(asked, "failed", None)
            return None
        return model

    def _finish(self, asked: Asked, model: Any, future: cf.Future[Any]) -> bool:
        """Record how a trial ended; True when it finished."""
        try:
            out = future.result()
        except Exception as exc:  # noqa: BLE001 - a failing trial is recorded, the search goes on
            from dryml.search._report import MonitorMissingError, TrialPruned

            status = "pruned" if isinstance(exc, TrialPruned) else "failed"
            error = None if status == "pruned" else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, MonitorMissingError):
                self._halt = str(exc)  # every trial would fail alike: start no more
            history = getattr(model, "train_state", None)
            last = dict(history.history[-1]) if history and history.history else {}
            with self._lock:  # no score: its last epoch's logs are kept apart (see below)
                self.repo.set_metadata(model, {"status": status, "error": error,
                                               "metrics": {}, "last_epoch": _json_safe(last)})
            self.sampler.tell(asked, status, None)
            return status == "pruned"
        if out.get("pruned"):
            # A pruned trial has no score. Its last epoch's logs go under last_epoch: kept as
            # its metrics, a Keras model's training "accuracy" (0.99) read as the search's
            # accuracy in repo ls --order-by metrics.accuracy, to_frame and plot.compare
            meta = self._meta(asked, model, status="pruned",
                              last_epoch=_json_safe(out["metrics"]),
                              kept=self.keep == "all", **_timing(out))
            with self._lock:
                if self.keep == "all":
                    self.repo.add_object(model, metadata=meta, replace=True)
                else:
                    self.repo.set_metadata(model, meta)
            self._finished += 1
            self.sampler.tell(asked, "pruned", None)
            return True
        values = [out["metrics"][n] for n, _ in self.metrics]
        bad = [(n, v) for (n, _), v in zip(self.metrics, values, strict=True)
               if not math.isfinite(v)]
        if bad:  # a diverged model: no value to rank it by (Optuna fails such trials too)
            error = (f"the metric {bad[0][0]!r} is {bad[0][1]} (NaN or infinite: did the "
                     "model diverge?); the trial counts as failed")
            meta = self._meta(asked, model, status="failed", metrics=_json_safe(out["metrics"]),
                              error=error, **_timing(out))
            with self._lock:
                self.repo.set_metadata(model, meta)
            self.sampler.tell(asked, "failed", None)
            return False
        if out.get("reported") == 0 and not self._unreported_warned:
            self._unreported_warned = True
            warnings.warn(
                f"the pruner got no epochs from trial {asked.number} "
                f"({type(model).__qualname__}): its training reports none, so the pruner "
                "cannot stop it (a model trained in one fit, as scikit-learn's, has no epochs "
                "to report). A Trainable that trains in epochs reports each one by calling "
                "its on_epoch_end(logs), or dryml.search.report_epoch(epoch, logs) "
                "(docs/search.md)", DrymlWarning, stacklevel=2)
        meta = self._meta(asked, model, status="complete", metrics=out["metrics"],
                          values=values, **_timing(out))
        best = self._best is None or self._better(values, asked.number, self._best)
        keep = self.keep == "all" or (self.keep == "best" and best)
        with self._lock:
            if keep:
                meta["kept"] = True
                self.repo.add_object(model, metadata=meta, replace=True)
            else:
                self.repo.set_metadata(model, meta)
            if best and self.keep == "best" and self._best is not None:
                self._drop_model(self._best)
        row = {"number": asked.number, "values": values, "dry_id": model.dry_id}
        if best:
            self._best = row
        self._finished += 1
        self.sampler.tell(asked, "complete", values)
        return True

    def _better(self, values: list[float], number: int, best: dict[str, Any]) -> bool:
        """Whether a trial ranks before the best so far (as :func:`ranked` orders them: a tie
        goes to the lower trial number, which parallel trials may finish after)."""
        return ((rank_key(values, self.directions), number)
                < (rank_key(best["values"], self.directions), best["number"]))

    def _drop_model(self, row: dict[str, Any]) -> None:
        """keep="best": the old best's file becomes its untrained definition (metadata stays)."""
        definition = self.repo.get_one(row["dry_id"]).definition()
        meta = self.repo.metadata(row["dry_id"])
        self.repo.add_object(_untrained(definition.without_id(), row["dry_id"]),
                             metadata={**meta, "kept": False}, replace=True)

    def _interrupt(self, in_flight: dict[cf.Future[Any], tuple[Asked, Any]],
                   unrecorded: list[tuple[Any, dict[str, Any]]]) -> None:
        """Record the trials in flight as interrupted (``unrecorded``: those handed to a
        worker whose running record is not in the repo yet) and stop the workers."""
        from dryml.context import shutdown_workers

        why = {"status": "interrupted", "error": "interrupted (Ctrl-C)"}
        with self._lock:
            if unrecorded:
                self.repo.add_objects([r for r, _ in unrecorded],
                                      metadata=[{**m, **why} for _, m in unrecorded])
            new = {r.dry_id for r, _ in unrecorded}
            for _, model in in_flight.values():
                if model.dry_id not in new:
                    self.repo.set_metadata(model, why)
        for asked, _ in in_flight.values():
            self.sampler.tell(asked, "failed", None)
        shutdown_workers()  # the threads waiting on workers return at once


@contextlib.contextmanager
def _interrupt_deferred() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block until its end, so that a trial's records
    are written whole (in the main thread only: signals go there; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and previous != signal.SIG_IGN:
            if callable(previous) and previous is not signal.default_int_handler:
                previous(signal.SIGINT, caught[0])  # the caller's own handler decides
            else:
                raise KeyboardInterrupt


def _timing(out: dict[str, Any]) -> dict[str, Any]:
    """When a trial ran, from its worker's report, as its metadata records it."""
    return {"seconds": round(out["seconds"], 4), "started": out["started"],
            "finished": out["finished"]}


def _whole(what: str, value: Any, minimum: int, limit: int | None = None, *,
           none: bool = True) -> Any:
    """``value`` as an int in ``[minimum, limit)`` (a numpy integer too), or None when
    ``none`` allows it; else a ConfigurationError naming ``what``."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigurationError(f"{what} must be a whole number, got {value!r}")
    if value < minimum or (limit is not None and value >= limit):
        bound = f" and below {limit}" if limit is not None else ""
        raise ConfigurationError(f"{what} must be >= {minimum}{bound}, got {value}")
    return int(value)


def _json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as metadata (plain JSON): a NaN or infinite value is kept as its name."""
    return {k: repr(v) if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in metrics.items()}


def _derive_ids(value: Any, scope: str, counter: list[int]) -> None:
    """Give each definition in ``value`` without an id one derived from ``scope`` and its
    place; inside a definition with an id of its own (one object in several places) the
    places count from that id, so every copy of it gets the same ids and stays one object
    (otherwise its nested definitions would differ, and every trial fail to build)."""
    if isinstance(value, ObjectDef):
        fixed = value.dry_id
        if fixed is None:
            value.kwargs["dry_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}:{counter[0]}"))
            counter[0] += 1
            inner_scope, inner = scope, counter
        else:
            inner_scope, inner = f"{scope}:{fixed}", [0]
        for item in (*value.args, *value.kwargs.values()):
            _derive_ids(item, inner_scope, inner)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _derive_ids(item, scope, counter)
    elif isinstance(value, dict):
        for item in value.values():
            _derive_ids(item, scope, counter)


def _untrained(definition: ObjectDef, dry_id: str) -> Any:
    """A fresh (untrained) object of ``definition`` with the given ``dry_id``."""
    return ObjectDef(definition.cls, *definition.args, dry_mut=definition.dry_mut,
                     **{**definition.kwargs, "dry_id": dry_id}).build()


def _framework_label(model: Any) -> str:
    """The framework a trial ran in, for its metadata: the model's, or those of the
    Trainables in it joined by '+' (a Pipe of scikit-learn and torch steps:
    'sklearn+torch'; it said 'default')."""
    return "+".join(sorted(frameworks_of(model))) or str(type(model).dry_framework)


def search_names(repo: Any) -> Iterable[str]:
    """Names of the searches a repo holds."""
    state = Path(repo.directory) / _store.STATE_DIR
    return sorted(p.stem for p in state.glob("*.json")) if state.exists() else []


_ = DrymlError  # re-exported through errors users catch

