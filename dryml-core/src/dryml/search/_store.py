"""A search's state in its Repo: the settings file and one entry per trial.

Each trial is an entry of the Repo: the trial's model (untrained while it runs, trained when
kept) with metadata ``{"search", "trial", "params", "metrics", "values", "status",
"seconds", "error", "kept"}``. A trial whose model could not be built is a
:class:`TrialRecord`. The settings (space, sampler, metrics) are JSON in
``<repo>/.dryml-search/<name>.json``, next to Optuna's SQLite storage.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from dryml._object import Object
from dryml.errors import ConfigurationError
from dryml.repo._match import json_equal

__all__ = ["TrialRecord", "load_trials", "mark_running_failed", "state_dir", "write_settings"]

STATE_DIR = ".dryml-search"


class TrialRecord(Object):
    """A trial with no model to keep (its definition could not be built)."""

    def __init__(self, search: str, number: int) -> None:
        self.search, self.number = search, number


def state_dir(repo_dir: Path) -> Path:
    """``<repo>/.dryml-search`` (the Repo ignores dot-names)."""
    path = Path(repo_dir) / STATE_DIR
    path.mkdir(exist_ok=True)
    return path


def write_settings(directory: Path, name: str, settings: dict[str, Any]) -> None:
    """Write a new search's settings, or check that a resumed one has the same."""
    path = directory / f"{name}.json"
    if path.exists():
        old = _read(path, name)
        if "storage" not in old:  # written before the storage was recorded: Optuna's default
            old["storage"] = "journal" if settings.get("storage") is not None else None
        # as JSON holds them, compared as ObjectDef == compares: a space of Choice(1.0, 2.0)
        # is not the search of Choice(1, 2) (Python's == took it for one, and trials of both
        # were mixed in one search)
        new = json.loads(json.dumps(settings))
        changed = sorted(k for k in new if k != "n_trials" and not json_equal(old.get(k), new[k]))
        if changed:
            raise ConfigurationError(
                f"a search named {name!r} already exists in this repo with another "
                f"{', '.join(changed)}; give the new search another name (or resume the old "
                "one with its own settings)")
        return
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(settings, fh, indent=1)
    os.replace(tmp, path)


def read_settings(repo_dir: Path, name: str) -> dict[str, Any] | None:
    """A search's settings, or None when there is no such search."""
    path = Path(repo_dir) / STATE_DIR / f"{name}.json"
    if not path.exists():
        return None
    return _read(path, name)


_TRIALS_TOO = (" (after removing the search's trials from the repository, which 'dryml repo "
               "ls {repo} --where search={name}' lists: else they join the new search)")


def existing_trials_without_settings(repo: Any, name: str) -> None:
    """Refuse to start search ``name`` anew while the repository holds trials of a search of
    that name whose settings file is gone (deleting a damaged settings file, as its error
    said, made a new search resume the old one's trials, reporting an old trial's params,
    outside the new space, as the best)."""
    count = len(repo.ids(where={"search": name}))
    if count:
        raise ConfigurationError(
            f"the repository holds {count} trial(s) of a search named {name!r} but not its "
            f"settings ({STATE_DIR}/{name}.json): restore that file to resume the search, run "
            "this one under another name, or remove the old trials first ('dryml repo ls "
            f"{repo.directory} --where search={name}' lists them)")


def _read(path: Path, name: str) -> dict[str, Any]:
    """A settings file, or a ConfigurationError saying what is wrong with it."""
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"the settings of search {name!r} ({path}) are not JSON "
                                 f"({exc}): restore the file, or delete it to make the search "
                                 "anew under that name") from None
    if not (isinstance(data, dict) and isinstance(data.get("metrics"), list)
            and isinstance(data.get("directions"), list)):
        raise ConfigurationError(f"the settings of search {name!r} ({path}) are not a search's "
                                 "settings (metrics and directions are missing): restore the "
                                 "file, or delete it to make the search anew under that name"
                                 + _TRIALS_TOO.format(name=name, repo=path.parent.parent))
    metrics, directions = data["metrics"], data["directions"]
    # Ranking takes any direction other than "maximize" for "minimize": an edited or damaged
    # file ("Maximize", or no directions) would silently show the worst trial as the best, so
    # the settings are held to what a Search writes.
    if not (metrics and len(directions) == len(metrics)
            and all(isinstance(m, str) for m in metrics)
            and all(d in ("maximize", "minimize") for d in directions)):
        raise ConfigurationError(
            f"the settings of search {name!r} ({path}) name metrics {metrics!r} with "
            f"directions {directions!r}: each metric needs one direction, 'maximize' or "
            "'minimize'. Restore the file, or delete it to make the search anew under that name"
            + _TRIALS_TOO.format(name=name, repo=path.parent.parent))
    return data


def load_trials(repo: Any, name: str) -> list[dict[str, Any]]:
    """Every trial of a search, one row each (the Repo index alone: nothing is loaded)."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in repo.entries(where={"search": name}):
        meta = entry["metadata"]
        if not isinstance(meta.get("trial"), int):
            continue
        metrics, last_epoch = meta.get("metrics", {}), meta.get("last_epoch", {})
        if meta.get("status") == "pruned" and "last_epoch" not in meta:
            # recorded by an earlier dryml, which kept a pruned trial's epoch logs as its
            # metrics (a Keras model's training accuracy read as the search's score)
            metrics, last_epoch = {}, metrics
        row = {"number": meta["trial"], "params": meta.get("params", {}),
               "metrics": metrics, "values": meta.get("values"), "last_epoch": last_epoch,
               "status": meta.get("status"), "seconds": meta.get("seconds"),
               "dry_id": entry["dry_id"], "kept": meta.get("kept", False),
               "error": meta.get("error"), "framework": meta.get("framework"),
               "started": meta.get("started"), "finished": meta.get("finished")}
        old = rows.get(row["number"])
        if old is None or (old["status"] == "running" and row["status"] != "running"):
            rows[row["number"]] = row
    return [rows[n] for n in sorted(rows)]


def mark_running_failed(repo: Any, trials: list[dict[str, Any]]) -> int:
    """Trials a killed search left running are failed (they are sampled again)."""
    count = 0
    for row in trials:
        if row["status"] == "running":
            error = "the search stopped while this trial ran (killed)"
            repo.set_metadata(row["dry_id"], {"status": "failed", "error": error})
            row.update(status="failed", error=error)
            count += 1
    return count
