"""A dryml space driven by Ray Tune: ``param_space`` plus a Tune trainable, trials into a Repo.

For users who already run Ray Tune and want its schedulers (ASHA, PBT) to drive dryml
definitions::

    trainable, param_space = tune_search(space, train, valid, metric="accuracy")
    results = tune.Tuner(trainable, param_space=param_space,
                         tune_config=tune.TuneConfig(metric="accuracy", mode="max",
                                                     num_samples=20)).fit()
    collect_tune(results, repo, name="tuned")   # every finished trial lands in the Repo

Each trial builds the definition for Tune's config, trains it in the Tune trial's process
(prepared for its framework like a dryml worker) with the validation data, reports every
epoch that logs ``monitor`` under the metric's name (so ASHA can stop it) and finally the
metrics, with the trained model saved as a ``.dry`` file in the trial's checkpoint.
:func:`collect_tune` runs on the driver and writes those models into the Repo with the same
metadata as ``Search`` trials, and the search's settings beside them. Needs
``dryml-core[ray]`` with Ray Tune (``ray[tune]``).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from dryml.errors import ConfigurationError
from dryml.search._markers import ChoiceSpec
from dryml.search._space import Space
from dryml.search._trial import Metric, monitor_direction_of, resolve_metrics

__all__ = ["collect_tune", "param_space", "tune_search"]

MODEL_FILE = "model.dry"


def param_space(space: Any) -> dict[str, Any]:
    """Tune's ``param_space`` for a dryml space (one entry per marker, by its name)."""
    tune = _tune()
    out: dict[str, Any] = {}
    for param in (space if isinstance(space, Space) else Space(space)).params:
        spec = param.spec
        if isinstance(spec, ChoiceSpec):
            out[param.name] = tune.choice(list(spec.labels))
        elif spec.step is not None and not (spec.kind == "int" and spec.step == 1):
            # exactly dryml's grid (low + k * step): Tune's qrandint/quniform round to
            # multiples of the step, which sampled values outside the space (Int(1, 10,
            # step=3) gave 3, 6, 9) or refused a low that is not a multiple of it
            out[param.name] = tune.choice(spec.grid_values(param.name))
        elif spec.kind == "int":
            high = int(spec.high) + 1  # Tune's integer ranges exclude the upper bound
            out[param.name] = (tune.lograndint if spec.log else tune.randint)(int(spec.low),
                                                                              high)
        else:
            out[param.name] = (tune.loguniform if spec.log else tune.uniform)(spec.low,
                                                                            spec.high)
    return out


def _tune() -> Any:
    """``ray.tune`` (typed as Any: the extra may be absent where dryml is type-checked)."""
    import importlib

    return importlib.import_module("ray.tune")


def _enter_context(frameworks: set[str]) -> None:
    """Make this Tune trial process a dryml context for ``frameworks`` (prepared once)."""
    from dryml.context._pool import context_plugins
    from dryml.context._state import ComputeContext, current_context, set_current_context
    from dryml.records import load_ref

    if current_context() is not None:
        return
    ctx = ComputeContext({framework: {} for framework in sorted(frameworks)})
    for ref in context_plugins(sorted(frameworks)).values():
        plugin = load_ref(ref)
        os.environ.update(plugin.environment(ctx))
        plugin.prepare(ctx)
    set_current_context(ctx)


def tune_search(space: Any, train: Any, valid: Any, *, metric: Any = "accuracy",
                direction: Any = None, monitor: str | None = None,
                monitor_direction: str | None = None
                ) -> tuple[Callable[[dict[str, Any]], None], dict[str, Any]]:
    """``(trainable, param_space)`` for ``tune.Tuner`` from a dryml space.

    Each trial trains on ``train`` with ``valid`` as its validation data (so a torch or Keras
    Trainable logs ``val_*`` every epoch) and scores on ``valid``. Every epoch that logs
    ``monitor`` (default ``val_<metric>``, e.g. ``val_accuracy``) is reported to Tune under
    the first metric's name, which is what a scheduler such as ASHA compares, negated when it
    improves the other way (``val_loss`` for accuracy; ``monitor_direction`` says which way a
    name dryml does not know improves, as for :class:`dryml.search.Search`); epochs that do
    not log it are not reported (Tune refuses a result without the metric). The last report
    holds the metrics (by name) with the trained model in its checkpoint; give the Tuner the
    first metric's name and mode.
    """
    space = space if isinstance(space, Space) else Space(space)
    metrics, directions = resolve_metrics(metric, direction)
    first = metrics[0][0]
    watched = monitor or f"val_{first}"
    # a scheduler compares the reports in the Tuner's mode, the first metric's: a monitor
    # that goes the other way is negated (val_loss reported as accuracy made ASHA stop the
    # best trials)
    sign = -1.0 if monitor_direction_of(watched, monitor_direction, first, directions[0],
                                        needed=monitor is not None) != directions[0] else 1.0

    def trainable(config: dict[str, Any]) -> None:
        from dryml._io import save_object
        from dryml.models._trainable import frameworks_of

        tune = _tune()
        model = space.build_def(config).build()
        # every framework of the Trainables in it (a Pipe of scikit-learn steps: 'sklearn')
        _enter_context(frameworks_of(model) or {type(model).dry_framework})
        from dryml.search._trial import reporting_step

        step = reporting_step(model)  # a Pipe's epochs are its last step's
        original = getattr(step, "on_epoch_end", None)
        if original is not None:
            def on_epoch_end(logs: dict[str, float]) -> None:
                original(logs)
                if isinstance(logs.get(watched), (int, float)):
                    tune.report({**{k: float(v) for k, v in logs.items()
                                    if isinstance(v, (int, float))},
                                 first: sign * float(logs[watched])})

            step.__dict__["on_epoch_end"] = on_epoch_end
        try:
            out = _train_and_score(model, train, valid, metrics)
        finally:
            step.__dict__.pop("on_epoch_end", None)
        folder = tempfile.mkdtemp(prefix="dryml-tune-")
        save_object(model, os.path.join(folder, MODEL_FILE))
        try:
            tune.report({**out["metrics"], "dryml_seconds": out["seconds"]},
                        checkpoint=tune.Checkpoint.from_directory(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # Tune has copied it to its storage

    return trainable, param_space(space)


def _train_and_score(model: Any, train: Any, valid: Any, metrics: list[Metric]
                     ) -> dict[str, Any]:
    """Train with ``valid`` as validation data (the epochs' ``val_*`` logs, which Tune's
    schedulers read), then score."""
    from dryml.search._trial import _score, trial_validation

    start = time.perf_counter()
    model.train(train, trial_validation(model, valid, watched=True))
    return {"metrics": _score(model, valid, metrics), "seconds": time.perf_counter() - start}


def collect_tune(results: Any, repo: Any, name: str, *, metric: Any = "accuracy",
                 direction: Any = None, space: Any = None,
                 trust: tuple[str, ...] = ()) -> int:
    """Write every finished trial of a Tune ``ResultGrid`` into ``repo`` (on the driver);
    returns how many. Metadata as ``Search`` trials: ``search``, ``trial``, ``params``,
    ``metrics``, ``values``, ``status``; the search's settings (sampler ``ray-tune``, the
    metrics and their directions, and ``space`` when given) go where ``Search`` keeps its
    own, so ``dryml search ls``/``show`` and the leaderboard know the search."""
    from pathlib import Path

    from dryml._io import load_object
    from dryml.repo import Repo
    from dryml.search._store import state_dir, write_settings

    repo = repo if isinstance(repo, Repo) else Repo(Path(repo), create=True)
    resolved, directions = resolve_metrics(metric, direction)
    names = [n for n, _ in resolved]
    if space is not None:
        space = space if isinstance(space, Space) else Space(space)
    held = len(repo.ids(where={"search": name}))
    if held:  # Tune numbers each run's trials from 0: the new ones would hide behind the old
        raise ConfigurationError(
            f"{repo.directory} already holds {held} trial(s) of a search named {name!r}; "
            "collect these results under another name (each Tune run numbers its trials from "
            "0, so trials of two runs under one name would be taken for one another), or, to "
            f"collect again, remove those first ('dryml repo ls {repo.directory} --where "
            f"search={name}' lists them)")
    write_settings(state_dir(repo.directory), name, {
        "space": None if space is None else space.to_dict(), "sampler": "ray-tune",
        "metrics": names, "directions": directions, "seed": None, "folds": None,
        "n_trials": len(results), "storage": None})
    count = 0
    for number, result in enumerate(results):
        if result.error is not None or result.checkpoint is None:
            continue
        with result.checkpoint.as_directory() as folder:
            model = load_object(os.path.join(folder, MODEL_FILE), trust=trust)
        metrics = {k: v for k, v in result.metrics.items() if k in names}
        values = [metrics.get(n) for n in names]
        bad = next((n for n, v in zip(names, values, strict=True) if not _finite(v)), None)
        config = dict(result.config)
        if space is not None:
            # only what the trial used: Tune samples the markers of every Choice option,
            # chosen or not (otherwise unchosen options' values would be recorded)
            with contextlib.suppress(KeyError):
                config = space.sample(lambda key, _spec, given=config: given[key])[1]
        # a trial that reported no value (or NaN: a diverged model) has nothing to rank it
        # by: failed, as Search records it (a complete one without values broke the table)
        error = None if bad is None else (
            f"the metric {bad!r} is {metrics[bad]!r} (NaN or infinite: did the model "
            "diverge?)" if bad in metrics else f"the trial reported no metric {bad!r}")
        repo.add_object(model, metadata={
            "search": name, "trial": number, "params": config,
            "framework": type(model).dry_framework,
            "metrics": {k: v if _finite(v) else repr(v) for k, v in metrics.items()},
            "values": values if error is None else None,
            "status": "complete" if error is None else "failed", "kept": True,
            "seconds": result.metrics.get("dryml_seconds"), "error": error,
            "runner": "ray-tune"})
        count += 1
    return count


def _finite(value: Any) -> bool:
    """Whether ``value`` is a finite number (a trial's value to rank it by)."""
    if type(value) is bool or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(float(value))
