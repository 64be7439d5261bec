"""``dryml search ls|show REPO [NAME]``: a search's trials and best trial, from the Repo index.

Nothing is imported and no model file is read: trials are entries of the repository's index.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dryml.cli._text import count

__all__ = ["register", "run_ls", "run_show"]


def register(subparsers: Any) -> None:
    """Add the ``search`` command and its subcommands."""
    parser = subparsers.add_parser(
        "search", help="show the hyperparameter searches kept in a repository",
        description="Show the searches (dryml.search.Search) whose trials a repository keeps.")
    parser.set_defaults(help_parser=parser)  # 'dryml search' alone lists its actions
    sub = parser.add_subparsers(title="search commands", metavar="ACTION")
    ls = sub.add_parser("ls", help="list the searches of a repository")
    ls.add_argument("directory", metavar="REPO")
    ls.set_defaults(run=run_ls)
    show = sub.add_parser("show", help="a search's trials table and its best trial")
    show.add_argument("directory", metavar="REPO")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--top", type=count, default=20, metavar="N",
                      help="rank at most N trials (default 20)")
    show.add_argument("--json", action="store_true", help="print JSON for machines")
    show.set_defaults(run=run_show)


def _open(directory: str) -> Any:
    from dryml.cli._repo import open_repository

    return open_repository(directory)  # (never creates an index: says how to make one)


def run_ls(args: argparse.Namespace) -> int:
    """Print one line per search: name, sampler, metrics, trials by status."""
    from dryml.search._search import search_names
    from dryml.search._store import load_trials, read_settings

    repo = _open(args.directory)
    names = search_names(repo)
    if not names:
        print(f"no searches in {args.directory} (a Search(..., repo=...) keeps its trials "
              "there)")
    for name in names:
        settings = read_settings(repo.directory, name) or {}
        trials = load_trials(repo, name)
        done = sum(t["status"] == "complete" for t in trials)
        print(f"{name}: sampler {settings.get('sampler')}, metrics "
              f"{', '.join(settings.get('metrics', []))}, {len(trials)} trials ({done} complete)")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print every trial and the best one (or JSON)."""
    from dryml.errors import ObjectNotFoundError
    from dryml.search._result import leaderboard_text, metric_columns, ranked, trial_row
    from dryml.search._store import load_trials, read_settings

    repo = _open(args.directory)
    settings = read_settings(repo.directory, args.name)
    if settings is None:
        raise ObjectNotFoundError(f"no search named {args.name!r} in {repo.directory}; "
                                  "`dryml search ls REPO` lists them")
    trials = load_trials(repo, args.name)
    directions, metrics = settings["directions"], settings["metrics"]
    best = ranked(trials, directions)[:1]
    if args.json:
        print(json.dumps({"name": args.name, "settings": {k: v for k, v in settings.items()
                                                          if k != "space"},
                          "trials": trials, "best": best[0] if best else None}, indent=1))
        return 0
    head, widths = metric_columns(metrics)
    print(f"{'trial':>6}  {'status':<11}{head}{'seconds':>9}  params")
    for t in trials:
        # a pruned trial has no score: '-' (its epoch logs are its last_epoch; a search
        # recorded before kept them as its metrics, where 'accuracy' is a training score)
        values = t["values"] or [None if t["status"] == "pruned" else t["metrics"].get(m)
                                 for m in metrics]
        row = trial_row(t, values, widths)
        print(f"{row[:6]}  {t['status']:<11}{row[6:]}")
    print()
    print(leaderboard_text(args.name, trials, directions, metrics, top=args.top))
    if best:
        print(f"\nbest: trial {best[0]['number']} ({best[0]['dry_id']}, "
              f"{'kept' if best[0]['kept'] else 'model not kept'})")
    return 0
