"""Fuzzing real files of every backend: mutate members and manifests, recompute every
checksum (so the bytes reach the parsers behind them), load each case in a child process
with a memory cap and a watchdog, and count the outcomes.

The CI test (test_fuzz_backends.py) runs a bounded number of cases; a long run for numbers:

    python tests/integration/fuzzing.py --cases 5000 [--backend torch]

Outcomes: ``loaded``, the dryml error class name, ``OTHER:<type>`` (a non-dryml exception: a
bug), ``CRASH:<signal>`` (the process died), ``HANG`` (the watchdog fired), ``MEMORY``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "core"))
from dryfiles import build_file, explode, json_paths  # noqa: E402

from dryml import Object  # noqa: E402

MEMORY_CAP = 3 * 2**30
CASE_TIMEOUT_S = 20
JUNK: list[Any] = [None, True, 0, -1, 2**70, 1.5, "", "x", "../x", "os:system", [], {},
                   [1, [2]], {"__dry__": "tuple"}, {"__dry__": "class", "path": "os:system"},
                   {"__dry__": "codec", "codec": "numpy.ndarray", "package": "dryml-core",
                    "data": {"dtype": "<f8", "shape": [2**40], "b64": ""}}]

# Builds one real file per backend in a child (the framework imported only there).
MAKERS = {
    "torch": """
        import torch
        from dryml_torch.models import Network
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                  torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
        net(torch.randn(2, 3, 8, 8)).sum().backward()
        value = net
    """,
    "tf": """
        import numpy as np, keras
        inputs = keras.Input((4,))
        norm = keras.layers.Normalization()
        norm.adapt(np.arange(40, dtype="float32").reshape(10, 4))
        outputs = keras.layers.Dense(2)(keras.layers.Dense(8, activation="relu")(norm(inputs)))
        value = keras.Model(inputs, outputs)
    """,
    "sklearn": """
        from sklearn.datasets import load_iris
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        x, y = load_iris(return_X_y=True)
        value = make_pipeline(StandardScaler(),
                              RandomForestClassifier(n_estimators=3, max_depth=3,
                                                     random_state=0)).fit(x, y)
    """,
    "xgboost": """
        import numpy as np, xgboost
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(200, 4)), rng.integers(0, 3, 200)
        value = xgboost.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3},
                              xgboost.DMatrix(x, y), num_boost_round=4)
    """,
}

MAKE = """
import io, sys
sys.path.insert(0, {here!r})
from fuzzing import Box
from dryml import save_object
{body}
buf = io.BytesIO()
box = Box(); box.value = value
save_object(box, buf)
sys.stdout.buffer.write(buf.getvalue())
"""

CHILD = """
import faulthandler, io, json, os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
sys.path.insert(0, {here!r})
import fuzzing
from dryml import load_object
from dryml.errors import DrymlError
cases = open({cases!r}, "rb").read().split(b"\\0CASE\\0")
start = int(sys.argv[1])
out = open({log!r}, "a")
for i in range(start, len(cases)):
    out.write(f"START {{i}}\\n"); out.flush()
    faulthandler.dump_traceback_later({timeout}, exit=True)
    try:
        obj = load_object(io.BytesIO(cases[i]), trust=["fuzzing"])
        getattr(obj, "value", None)
        outcome = "loaded"
    except DrymlError as exc:
        outcome = type(exc).__name__
    except MemoryError:
        outcome = "MEMORY"
    except BaseException as exc:  # noqa: BLE001 - a non-dryml exception is what we look for
        outcome = "OTHER:" + type(exc).__name__ + ":" + str(exc)[:200].replace("\\n", " ")
    faulthandler.cancel_dump_traceback_later()
    out.write(f"DONE {{i}} {{outcome}}\\n"); out.flush()
"""


class Box(Object):
    """Holds one framework value through the store."""

    def __init__(self) -> None:
        self.value: Any = None

    def save_object_imp(self, store: Any) -> None:
        store.put("value", self.value)

    def load_object_imp(self, store: Any) -> None:
        self.value = store.get("value")


def make_file(backend: str) -> bytes:
    """A real .dry file holding a value of ``backend``, written by a child process."""
    script = MAKE.format(here=str(HERE), body=textwrap.dedent(MAKERS[backend]))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300,
                         check=False)
    if out.returncode:
        raise RuntimeError(out.stderr.decode()[-3000:])
    return out.stdout


def _mutate_manifest(rng: random.Random, manifest: dict[str, Any]) -> None:
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in json_paths(manifest) if p]
        path = rng.choice(paths)
        parent: Any = manifest
        for key in path[:-1]:
            parent = parent[key]
        old = parent[path[-1]]
        action = rng.random()
        if action < 0.5:
            parent[path[-1]] = copy.deepcopy(rng.choice(JUNK))
        elif action < 0.65 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(old, bool):
            parent[path[-1]] = not old
        elif isinstance(old, int):
            parent[path[-1]] = old + rng.choice([-1, 1, 7, -7, 2**31, -(2**31), 2**62])
        elif isinstance(old, float):
            parent[path[-1]] = rng.choice([old * 1e30, -old, float("nan"), 0.0])
        elif isinstance(old, str) and old:
            pos = rng.randrange(len(old))
            parent[path[-1]] = old[:pos] + rng.choice("x0._:/") + old[pos + 1:]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(JUNK))


def _mutate_raw(rng: random.Random, raw: bytes) -> bytes:
    buf = bytearray(raw)
    if not buf:
        return bytes(rng.randrange(256) for _ in range(8))
    choice = rng.random()
    if choice < 0.5:
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif choice < 0.7:
        pos = rng.randrange(len(buf))
        buf[pos] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    elif choice < 0.85:
        return bytes(buf[:rng.randrange(len(buf))])
    else:
        start = rng.randrange(len(buf))
        buf[start:start + 8] = bytes(rng.randrange(256) for _ in range(8))
    return bytes(buf)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One mutated file with every checksum valid: a member's content (decompressed, changed,
    stored again) or the manifest's values."""
    import zstandard

    manifest, members = explode(data)
    if rng.random() < 0.5 and members:
        name = rng.choice(sorted(members))
        stored, raw_size, compression, kind = members[name]
        raw = (zstandard.ZstdDecompressor().decompress(stored, max_output_size=raw_size)
               if compression == "zstd" else stored)
        raw = _mutate_raw(rng, raw)
        members[name] = ((zstandard.ZstdCompressor().compress(raw), len(raw), "zstd", kind)
                         if compression == "zstd" else (raw, len(raw), "none", kind))
    else:
        _mutate_manifest(rng, manifest)
    return build_file(manifest, members)


def run_cases(cases: list[bytes], workdir: Path, budget_s: float = 1e9) -> Counter[str]:
    """Load every case in child processes (restarted after a crash or hang); outcomes."""
    cases_path, log_path = workdir / "cases.bin", workdir / "log.txt"
    cases_path.write_bytes(b"\0CASE\0".join(cases))
    log_path.write_text("")
    script = CHILD.format(cap=MEMORY_CAP, here=str(HERE), cases=str(cases_path),
                          log=str(log_path), timeout=CASE_TIMEOUT_S)
    outcomes: Counter[str] = Counter()
    start, deadline = 0, time.monotonic() + budget_s
    while start < len(cases) and time.monotonic() < deadline:
        proc = subprocess.run([sys.executable, "-c", script, str(start)], capture_output=True,
                              timeout=CASE_TIMEOUT_S * (len(cases) - start) + 120, check=False,
                              env={**os.environ, "OPENBLAS_NUM_THREADS": "1",
                                   "TF_CPP_MIN_LOG_LEVEL": "3"})
        started, done = -1, -1
        for line in log_path.read_text().splitlines():
            word, _, rest = line.partition(" ")
            if word == "START":
                started = int(rest)
            elif word == "DONE":
                index, _, outcome = rest.partition(" ")
                done = int(index)
                outcomes[outcome] += 1
        log_path.write_text("")
        if started > done:  # the child died inside a case
            code = proc.returncode
            outcomes["HANG" if code == 1 else f"CRASH:{-code if code < 0 else code}"] += 1
            start = started + 1
        elif proc.returncode:
            raise RuntimeError(proc.stderr.decode()[-3000:])
        else:
            start = len(cases)
    return outcomes


def fuzz(backend: str, count: int, seed: int, workdir: Path,
         budget_s: float = 1e9) -> Counter[str]:
    """``count`` mutations of a real ``backend`` file, loaded; outcome counts."""
    good = make_file(backend)
    rng = random.Random(seed)
    cases = [mutate(rng, good) for _ in range(count)]
    return run_cases(cases, workdir, budget_s)


def main() -> None:
    """Long runs from the shell: counts per backend and outcome, as JSON lines."""
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--backend", action="append", choices=sorted(MAKERS))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for backend in args.backend or sorted(MAKERS):
        with tempfile.TemporaryDirectory() as tmp:
            counts = fuzz(backend, args.cases, args.seed, Path(tmp))
        print(json.dumps({"backend": backend, "cases": args.cases, **dict(counts)}),
              flush=True)


if __name__ == "__main__":
    main()
