# /// script
# dependencies = ["nox>=2025.2.9"]
# ///
"""The one task runner of the dryml monorepo; the `PACKAGES` table drives every session.

`python3 -m nox` runs the CI set (lint, typecheck, tests per package, core_isolated,
integration, docs, ray), each session removing its environment when it ends (`drops_env`);
`python3 -m nox -s main` runs the main job (the cross-framework comparison), `-s tour` the
core-only tour, `-s bench` the benchmarks, and `nox -l` lists every session.

Every session builds its own virtualenv with pip (not uv: the CPU build of torch is a local
wheel that only pip's configured find-links sees) and installs every pin in
`constraints.txt` with `-c`, so torch resolves to the CPU wheel and tool versions stay put.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "virtualenv"
nox.options.error_on_external_run = True
# Plain `nox` (and so CI) runs exactly these, in this order; `main`, `tour` and `bench` run on
# demand.
nox.options.sessions = ["lint", "typecheck", "tests", "core_isolated", "integration", "docs",
                        "ray"]

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
TEST_TOOLS = ("pytest>=8", "hypothesis>=6.100")
# What the doc examples use beyond the packages themselves (e.g. matplotlib for charts).
DOCS_REQUIREMENTS = ("-r", str(ROOT / "docs" / "requirements.txt"))
STRICT_ENV = {"DRYML_STRICT_PLUGINS": "1"}
# dryml.search's Optuna samplers (the dryml-core[optuna] extra) and what its result tables and
# plots use: installed where search tests run, which then fail rather than skip without them.
SEARCH_REQUIREMENTS = ("optuna>=3.4", "pandas", "matplotlib>=3.7")
SEARCH_ENV = {"DRYML_REQUIRE_OPTUNA": "1"}
EXAMPLE_TIMEOUT_S = 300


@dataclass(frozen=True)
class Package:
    """One distribution of the monorepo and how its test session installs and runs it."""

    path: str  #: the package folder (holds pyproject.toml)
    tests: str  #: the test folder `pytest` runs for this package
    extras: tuple[str, ...] = ()  #: pip extras installed with it (e.g. tensorflow-cpu)
    backend: str | None = None  #: entry-point name of the backend; None for core

    def requirement(self, *, editable: bool, more_extras: tuple[str, ...] = ()) -> list[str]:
        """pip arguments that install this package (with its extras and `more_extras`) from
        the local tree."""
        extras = (*self.extras, *more_extras)
        target = str(ROOT / self.path) + (f"[{','.join(extras)}]" if extras else "")
        return ["-e", target] if editable else [target]


PACKAGES: dict[str, Package] = {
    "core": Package("dryml-core", "tests/core"),
    "tf": Package("dryml-tf", "tests/tf", extras=("cpu",), backend="tf"),
    "torch": Package("dryml-torch", "tests/torch", backend="torch"),
    "sklearn": Package("dryml-sklearn", "tests/sklearn", backend="sklearn"),
    "xgboost": Package("dryml-xgboost", "tests/xgboost", extras=("sklearn",), backend="xgboost"),
}
LINT_PATHS = [
    *(f"{pkg.path}/src" for pkg in PACKAGES.values()), "tests", "benchmarks", "docs", "noxfile.py"
]


def install(session: nox.Session, names: list[str], *extra: str, editable: bool = True,
            silent: bool | None = None, core_extras: tuple[str, ...] = ()) -> None:
    """Install the named packages (always with dryml-core, with `core_extras`) plus `extra`
    requirements."""
    wanted = ["core", *(name for name in names if name != "core")]
    args = [arg for name in wanted for arg in PACKAGES[name].requirement(
        editable=editable, more_extras=core_extras if name == "core" else ())]
    session.install(*CONSTRAINTS, *args, *extra, silent=silent)


def install_inputs_digest(*args: str) -> str:
    """A hash of everything an install depends on: the arguments, constraints.txt, the docs'
    requirements and every file of every package (the installs are not editable)."""
    digest = hashlib.sha256("\0".join(args).encode())
    files = [ROOT / "constraints.txt", ROOT / "docs" / "requirements.txt"]
    for pkg in PACKAGES.values():
        files += sorted(p for p in (ROOT / pkg.path).rglob("*") if p.is_file() and not any(
            part in {"__pycache__", "build", "dist"} or part.endswith(".egg-info")
            for part in p.relative_to(ROOT).parts))
    for path in files:
        digest.update(f"\0{path.relative_to(ROOT)}\0".encode())
        digest.update(path.read_bytes() if path.is_file() else b"(missing)")
    return digest.hexdigest()


def install_once(session: nox.Session, names: list[str], *extra: str, what: str) -> None:
    """`install` (non-editable, pip's progress shown), skipped when the reused environment
    already holds exactly these inputs (a stamp in the environment records their hash)."""
    stamp = Path(session.virtualenv.location) / ".dryml-install-inputs"
    digest = install_inputs_digest(*names, *extra)
    if stamp.is_file() and stamp.read_text() == digest:
        session.log(f"reusing environment (inputs unchanged): {session.virtualenv.location}")
        return
    if stamp.is_file():
        session.log(f"sources or requirements changed since the last run: installing {what} "
                    "again (what is installed already is kept)")
        stamp.unlink()
    else:
        session.log(f"installing {what} (first run only: a few minutes; later runs reuse this "
                    "environment)")
    install(session, names, *extra, editable=False, silent=False)
    stamp.write_text(digest)


def drops_env(func: Callable[..., None]) -> Callable[..., None]:
    """Remove the session's virtualenv when it ends (passed or failed).

    The CI set builds eleven environments of up to 3.5 GB each (13 GB together); kept, they
    once filled a CI machine's disk before the last session. Plain `nox` rebuilds them on the
    next run anyway, so removing them loses nothing; `nox -r` (reuse) or `DRYML_KEEP_ENVS=1`
    keeps them, e.g. to look into a failure.
    """

    @functools.wraps(func)
    def run(session: nox.Session, *args: Any, **kwargs: Any) -> None:
        try:
            func(session, *args, **kwargs)
        finally:
            location = session.virtualenv.location
            keep = os.environ.get("DRYML_KEEP_ENVS", "") not in {"", "0"}
            if location and not keep and not session.virtualenv.reuse_existing:
                session.log(f"removing this session's environment {location} (disk space; "
                            "DRYML_KEEP_ENVS=1 or `nox -r` keeps it)")
                shutil.rmtree(location, ignore_errors=True)

    return run


def isolated(*command: str) -> tuple[str, ...]:
    """`command` in a network namespace of its own whose only interface is loopback
    (util-linux's `unshare --net`, then tests/ray/isolated_net.py sets loopback up): what it
    starts listens on 127.0.0.1 there and nothing outside can reach it, nor can it download.
    Needs root, or unprivileged user namespaces (`--map-root-user` is added for a non-root
    user); `can_isolate` says whether this machine allows it."""
    return ("unshare", "--net", *_UNSHARE_USER, "--", "python",
            str(ROOT / "tests" / "ray" / "isolated_net.py"), *command)


_UNSHARE_USER = () if os.geteuid() == 0 else ("--map-root-user",)


@functools.cache
def can_isolate() -> bool:
    """Whether `unshare --net` works here (root, or unprivileged user namespaces allowed)."""
    import subprocess

    try:
        return subprocess.run(["unshare", "--net", *_UNSHARE_USER, "--", "true"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def isolation(session: nox.Session, what: str) -> Callable[..., tuple[str, ...]]:
    """`isolated` where this machine allows it; elsewhere commands run as they are, with a
    warning that `what` then runs on this machine's network."""
    if can_isolate():
        return isolated
    session.warn(f"`unshare --net` is not allowed here: {what} on this machine's network")
    return lambda *command: command


def require_env(names: list[str]) -> dict[str, str]:
    """Environment for test runs: strict plugins, and the named backends must not skip."""
    backends = [backend for name in names if (backend := PACKAGES[name].backend)]
    return {**STRICT_ENV, "DRYML_REQUIRE_BACKENDS": ",".join(backends)}


@nox.session
@nox.parametrize("package", list(PACKAGES), ids=list(PACKAGES))
@drops_env
def tests(session: nox.Session, package: str) -> None:
    """Test one package in a venv holding only it and dryml-core: undeclared deps fail."""
    search = SEARCH_REQUIREMENTS if package == "core" else ()
    # pandas: XGBoost's string-category encoder is tested through a DataFrame, and
    # scikit-learn's column transformers over DataFrames (pandas is no dependency of either)
    more = ("pandas",) if package in ("xgboost", "sklearn") else ()
    install(session, [package], *TEST_TOOLS, *search, *more)
    env = {**require_env([package]), **(SEARCH_ENV if package == "core" else {})}
    session.run("pytest", PACKAGES[package].tests, *session.posargs, env=env)


@nox.session
@drops_env
def core_isolated(session: nox.Session) -> None:
    """Build and install dryml-core alone (non-editable, no backend) and run its tests."""
    install(session, ["core"], *TEST_TOOLS, editable=False)
    session.run("pytest", PACKAGES["core"].tests, *session.posargs, env=STRICT_ENV)
    # The wheel's console script works with no backend installed.
    session.run("dryml", "plugins", env=STRICT_ENV)


@nox.session
@drops_env
def integration(session: nox.Session) -> None:
    """All five distributions installed together (non-editable): discovery, no conflicts,
    and the main job in its reduced mode (so the doc examples' requirements too)."""
    install(session, list(PACKAGES), *TEST_TOOLS, *DOCS_REQUIREMENTS, *SEARCH_REQUIREMENTS,
            editable=False)
    session.run("pip", "check")
    session.run("pytest", "tests/integration", *session.posargs,
                env={**require_env(list(PACKAGES)), **SEARCH_ENV})


@nox.session
@drops_env
def ray(session: nox.Session) -> None:
    """The Ray executor (dryml-core[ray]) on a real two-node Ray cluster that the tests start
    on loopback; a Ray that cannot start fails the session (nothing is skipped).

    pytest runs in a network namespace of its own (`isolated`), so every server Ray starts
    listens on 127.0.0.1 of that namespace only."""
    # every backend and the docs' requirements: the main job (compare_frameworks.py) runs on
    # the cluster and must give the local pool's leaderboard
    if not can_isolate():
        session.error("the Ray tests run in a network namespace of their own, and `unshare "
                      "--net` is not allowed here: run as root, or allow unprivileged user "
                      "namespaces (sysctl kernel.unprivileged_userns_clone=1)")
    install(session, list(PACKAGES), *TEST_TOOLS, *DOCS_REQUIREMENTS, *SEARCH_REQUIREMENTS,
            core_extras=("ray",))
    session.run(*isolated("pytest", "tests/ray", *session.posargs), env=STRICT_ENV,
                external=True)


@nox.session
@drops_env
def lint(session: nox.Session) -> None:
    """ruff over every package's sources, the tests, benchmarks and doc examples."""
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", *LINT_PATHS, *session.posargs)


@nox.session
@drops_env
def typecheck(session: nox.Session) -> None:
    """mypy --strict on dryml-core (configuration in mypy.ini)."""
    # pytest too: dryml.testing is a pytest plugin and is checked against pytest's types.
    # and the search extras: dryml.search is checked against Optuna's and matplotlib's types.
    install(session, ["core"], "mypy", *TEST_TOOLS, *SEARCH_REQUIREMENTS)
    session.run("mypy", *session.posargs)
    # what users' code sees: a misspelt lazily imported name must stay a type error
    session.run("mypy", "tests/typing")


@nox.session(reuse_venv=True)
def main(session: nox.Session) -> None:
    """The main job: every framework's models compared on one footing (README's first command).

    Extra arguments go to the script, e.g. `nox -s main -- --task regression`. Its environment
    is kept: later runs reinstall only when a package, constraints.txt or the docs'
    requirements changed.
    """
    install_once(session, list(PACKAGES), *DOCS_REQUIREMENTS, *SEARCH_REQUIREMENTS,
                 what="dryml-core, dryml-tf (tensorflow-cpu, ~1.3 GB installed), dryml-torch "
                 "(torch CPU, ~0.8 GB), dryml-sklearn (scikit-learn, scipy), dryml-xgboost "
                 "(xgboost, ~0.7 GB with its NCCL library), optuna, pandas, matplotlib")
    session.run("python", "docs/examples/compare_frameworks.py", *session.posargs,
                env=STRICT_ENV)


@nox.session
def tour(session: nox.Session) -> None:
    """The runnable tour of dryml-core alone (define, save, load, inspect)."""
    install(session, ["core"], editable=False)
    session.run("python", "docs/examples/tour.py", env=STRICT_ENV)


@nox.session
def bench(session: nox.Session) -> None:
    """Run every benchmarks/bench_*.py script (prints tables; never part of CI)."""
    # safetensors and Ray Tune: the comparison rows of bench_speed.py and bench_search.py
    install(session, list(PACKAGES), *SEARCH_REQUIREMENTS, "safetensors", "ray[tune]>=2.9")
    # isolated: bench_ray.py's cluster then listens on loopback only (see `isolated`)
    wrap = isolation(session, "the benchmarks run (bench_ray.py's Ray listens on every "
                              "interface)")
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.run(*wrap("python", str(script), *session.posargs), env=STRICT_ENV,
                    external=True)


@nox.session
@drops_env
def docs(session: nox.Session) -> None:
    """Run every docs/examples/*.py script with everything installed; any failure fails.

    Each runs in a network namespace of its own (`isolated`): an example that tried to
    download would fail, and the local Ray instance of cluster_ray.py listens on loopback."""
    # ray: examples/cluster_ray.py runs against a Ray instance it starts on this machine
    install(session, list(PACKAGES), *DOCS_REQUIREMENTS, *SEARCH_REQUIREMENTS, "ray>=2.9")
    scripts = sorted((ROOT / "docs" / "examples").glob("*.py"))
    if not scripts:
        session.error("no scripts in docs/examples")
    wrap = isolation(session, "the examples run (cluster_ray.py's Ray listens on every "
                              "interface)")
    for script in scripts:
        session.log(f"example: {script.relative_to(ROOT)}")
        # coreutils' timeout: a hung example fails the session (exit 124) instead of CI.
        session.run(*wrap(
            "timeout", "--kill-after=10", str(EXAMPLE_TIMEOUT_S), "python", str(script)),
            env=STRICT_ENV, external=True)
