"""Executors are plugins: listed by ``dryml plugins``, chosen by name, Ray imported only then."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cluster import RAY_ENV, RayCluster

import dryml.context as dc
from dryml.errors import ConfigurationError
from dryml.plugins import get_plugin_manager

ROOT = Path(__file__).resolve().parents[2]


def test_core_registers_local_and_ray_executors() -> None:
    records = {r.name: r for r in get_plugin_manager().iter_records("dryml_executors")}
    assert set(records) >= {"local", "ray"}
    assert records["ray"].extra == "dryml-core[ray]"


def test_dryml_plugins_lists_the_executors() -> None:
    out = subprocess.run([sys.executable, "-m", "dryml.cli", "plugins"], capture_output=True,
                         text=True, check=True,
                         env={**os.environ, "DRYML_EXECUTOR": "ray"}).stdout
    line = out.splitlines()[-1]
    assert line.strip().startswith("executors:")
    assert "local (from core)" in line and "ray (chosen, from core)" in line


def test_an_unknown_executor_is_refused_with_the_known_names() -> None:
    with pytest.raises(ConfigurationError, match="known ones are local, ray"):
        dc.configure(executor="slurm")


def test_local_calls_and_listing_plugins_never_import_ray() -> None:
    code = """
import sys
import dryml.context as dc
from dryml.cli import main

@dc.compute_context({"default": {}})
def one():
    return 1

assert one() == 1
main(["plugins"])
print("ray" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={k: v for k, v in os.environ.items()
                                          if k not in ("DRYML_EXECUTOR", "RAY_ADDRESS")})
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_the_docs_example_runs_on_the_cluster(cluster: RayCluster) -> None:
    env = {**os.environ, **RAY_ENV, "RAY_ADDRESS": cluster.address}
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" / "cluster_ray.py")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "calls ran in Ray actor process" in out.stdout


def test_a_ray_instance_dryml_starts_from_a_thread_outlives_the_thread() -> None:
    # DRYML_EXECUTOR=ray, no address: dryml starts Ray itself, here on its first call, made
    # from a thread that then ends (as a script's thread pool does); the instance keeps
    # serving, and RAY_ADDRESS names it for the processes this one starts
    code = """
import os, threading
import dryml.context as dc

@dc.compute_context({"default": {"cpu/0": 0.5}})
def where():
    return os.getpid()

first = []
thread = threading.Thread(target=lambda: first.append(where()))
thread.start()
thread.join()
assert where() == first[0] != os.getpid()
print("ok", os.environ.get("RAY_ADDRESS", "")[:3] != "")
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, **RAY_ENV, "DRYML_EXECUTOR": "ray"}, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["ok", "True"]  # and subprocesses would join it


def test_after_ray_shutdown_dryml_starts_a_fresh_local_instance() -> None:
    """No address: dryml starts Ray itself and exports RAY_ADDRESS for it. After the user's
    ray.shutdown() that instance is gone, and the next call waited for ever in ray.init to
    connect to the address dryml itself had exported."""
    code = """
import os
import ray
import dryml.context as dc

@dc.compute_context({"default": {"cpu/0": 0.5}})
def where():
    return os.getpid()

dc.configure(executor="ray")
first, address = where(), os.environ["RAY_ADDRESS"]
dc.shutdown_workers()
ray.shutdown()
dc.configure(executor="ray")
second = where()
assert os.getpid() not in (first, second)
print("ok", os.environ["RAY_ADDRESS"] != address)
dc.shutdown_workers()
ray.shutdown()
"""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DRYML_EXECUTOR")}
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**env, **RAY_ENV}, timeout=300)
    except subprocess.TimeoutExpired as exc:  # the old code: the second call never returned
        raise AssertionError(f"the call after ray.shutdown() hung:\n{exc.stderr!r}") from None
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["ok", "True"]  # a new instance, at its own address
