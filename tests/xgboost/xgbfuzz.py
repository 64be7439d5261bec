"""Fuzz XGBoost members of .dry files: real models, mutated model bytes, valid checksums.

Used by ``test_fuzz_xgboost.py`` (a bounded run) and runnable for a long run::

    python tests/xgboost/xgbfuzz.py run --cases 20000 [--seed 1] [--no-validation]

Each case is a file saved by dryml whose XGBoost model member (UBJSON) or training
configuration was mutated, then rewritten with *valid* member and manifest checksums, so the
bytes reach the model checks (and, without them, XGBoost's own parser). Cases load in worker
subprocesses (memory capped with RLIMIT_AS, a timeout per case); a worker that dies names
the case it was loading. A loaded model also predicts, since a model that loads but reads
out of bounds when used is no better. ``--no-validation`` loads as dryml did before it
checked models (to reproduce the crashes).
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import random
import resource
import select
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
import zstandard

from dryml import Object, save_object
from dryml.format._container import _TRAILER, ALIGN, ContainerReader

HERE = Path(__file__).resolve().parent
MEMORY_CAP = 3 * 2**30


class Held(Object):
    """An Object holding one XGBoost model (``tag`` names the data it predicts on)."""

    dry_mut = True
    dry_framework = "xgboost"

    def __init__(self, tag: str = "") -> None:
        self.tag = tag
        self.model: Any = None

    def save_object_imp(self, store: Any) -> None:
        store.put("model", self.model)

    def load_object_imp(self, store: Any) -> None:
        self.model = store.get("model")


# ---------------------------------------------------------------- models and their data
#: feature types of the categorical Booster's numpy input (category codes, a number, codes)
CAT_TYPES = ["c", "q", "c"]


def _codes(n: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.stack([rng.integers(0, 6, n), rng.normal(size=n), rng.integers(0, 7, n)],
                    axis=1).astype(np.float32)


def has_pandas() -> bool:
    """Whether pandas is installed (the model with string categories needs it)."""
    import importlib.util

    return importlib.util.find_spec("pandas") is not None


def inputs(tag: str) -> Any:
    """The features each model predicts on (deterministic: the worker rebuilds them)."""
    rng = np.random.default_rng(1)
    if tag == "booster_cat":
        return _codes(160)
    if tag == "regressor_cat":  # string and integer categories: XGBoost's category encoder
        import pandas as pd

        codes = _codes(160)
        colours = np.array(["red", "green", "blue", "cyan", "pink", "gold"])
        return pd.DataFrame({
            "colour": pd.Categorical(colours[codes[:, 0].astype(int)]),
            "x": codes[:, 1],
            "size": pd.Categorical((codes[:, 2].astype(int) + 1) * 10)})
    return rng.normal(size=(160, 5)).astype(np.float32)


def _target(tag: str, classes: int = 0) -> np.ndarray:
    x = _codes(160) if tag.endswith("cat") else inputs(tag)
    score = (x[:, 1] + x[:, 0] % 3 - 1.0 if tag.endswith("cat")
             else x[:, 0] + x[:, 1] * x[:, 2])
    if classes:
        edges = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
        return np.digitize(score, edges).astype(np.int64)
    return score.astype(np.float32)


def _dmatrix(tag: str, label: Any = None) -> Any:
    import xgboost as xgb

    return xgb.DMatrix(inputs(tag), label=label, enable_categorical=True,
                       feature_types=CAT_TYPES if tag == "booster_cat" else None)


def build_models() -> dict[str, Any]:
    """Boosters (gbtree, dart, gblinear, categorical) and the scikit-learn wrappers (the
    regressor on string categories only when pandas is installed)."""
    import xgboost as xgb

    small = {"max_depth": 3, "nthread": 1}
    out: dict[str, Any] = {}
    for tag, params, rounds in (
            ("booster_gbtree", {}, 4),
            ("booster_dart", {"booster": "dart", "rate_drop": 0.3}, 3),
            ("booster_linear", {"booster": "gblinear", "objective": "multi:softprob",
                                "num_class": 3}, 3),
            ("booster_cat", {"tree_method": "hist", "max_cat_to_onehot": 1}, 3)):
        data = _dmatrix(tag, _target(tag, params.get("num_class", 0)))
        base = {"nthread": 1} if params.get("booster") == "gblinear" else small
        out[tag] = xgb.train({**base, **params}, data, rounds)
    clf = xgb.XGBClassifier(n_estimators=3, **small)
    out["classifier_multi"] = clf.fit(inputs("classifier_multi"),
                                      _target("classifier_multi", 3))
    binary = xgb.XGBClassifier(n_estimators=20, early_stopping_rounds=2, **small)
    x, y = inputs("classifier_binary"), _target("classifier_binary", 2)
    out["classifier_binary"] = binary.fit(x[:120], y[:120], eval_set=[(x[120:], y[120:])],
                                          verbose=False)
    out["regressor"] = xgb.XGBRegressor(n_estimators=3, **small).fit(
        inputs("regressor"), _target("regressor"))
    ranker = xgb.XGBRanker(n_estimators=3, **small)
    out["ranker"] = ranker.fit(inputs("ranker"), _target("ranker", 4),
                               qid=np.repeat(np.arange(16), 10))
    if has_pandas():
        out["regressor_cat"] = xgb.XGBRegressor(
            n_estimators=3, enable_categorical=True, tree_method="hist", max_cat_to_onehot=1,
            **small).fit(inputs("regressor_cat"), _target("regressor_cat"))
    return out


def saved_files() -> dict[str, bytes]:
    """Each model saved by dryml (bytes of a .dry file)."""
    files = {}
    for tag, model in build_models().items():
        held = Held(tag)
        held.model = model
        buf = io.BytesIO()
        save_object(held, buf)
        files[tag] = buf.getvalue()
    return files


def predict(held: Any) -> np.ndarray:
    """Use a loaded model the way a user would."""
    import xgboost as xgb

    if isinstance(held.model, xgb.Booster):
        return np.asarray(held.model.predict(_dmatrix(held.tag)))
    return np.asarray(held.model.predict(inputs(held.tag)))


# ---------------------------------------------------------------- file surgery
def _entry(manifest: dict[str, Any]) -> dict[str, Any]:
    """The serializer meta of the (single) XGBoost entry."""
    return manifest["objects"][0]["state"]["model"]["meta"]  # type: ignore[no-any-return]


def _write(data: bytes, manifest: dict[str, Any], manifest_end: int, extra: bytes = b""
           ) -> bytes:
    """The file with ``extra`` appended to its data area and ``manifest`` re-checksummed."""
    body = bytearray(data[:manifest_end])
    body += bytes(-len(body) % ALIGN)
    offset = len(body)
    body += extra
    body += bytes(-len(body) % ALIGN)
    raw = json.dumps(manifest).encode()
    stored = zstandard.ZstdCompressor().compress(raw)
    trailer = _TRAILER.pack(len(body), len(stored), len(raw), xxhash.xxh3_64_intdigest(stored),
                            1, 0, b"DRYMLEND")
    if extra:
        name = _entry(manifest)["model"]
        manifest["members"][name].update(
            offset=offset, size=len(extra), raw_size=len(extra), compression="none",
            checksum=f"xxh3_64:{xxhash.xxh3_64_hexdigest(extra)}")
        raw = json.dumps(manifest).encode()
        stored = zstandard.ZstdCompressor().compress(raw)
        trailer = _TRAILER.pack(len(body), len(stored), len(raw),
                                xxhash.xxh3_64_intdigest(stored), 1, 0, b"DRYMLEND")
    return bytes(body) + stored + trailer


def model_member(data: bytes) -> bytes:
    """The UBJSON model member of a saved file."""
    reader = ContainerReader(io.BytesIO(data))
    info = reader.manifest["members"][_entry(reader.manifest)["model"]]
    return data[info["offset"]:info["offset"] + info["size"]]


def with_model(data: bytes, model: bytes) -> bytes:
    """``data`` with its model member replaced by ``model`` (valid checksums throughout)."""
    reader = ContainerReader(io.BytesIO(data))
    return _write(data, reader.manifest, reader.manifest_end, model)


def with_manifest(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """``data`` with ``edit`` applied to its manifest (valid checksum)."""
    reader = ContainerReader(io.BytesIO(data))
    edit(reader.manifest)
    return _write(data, reader.manifest, reader.manifest_end)


# ---------------------------------------------------------------- UBJSON-aware mutations
_WIDTH = {"i": ">b", "U": ">B", "I": ">h", "l": ">i", "L": ">q", "d": ">f"}
INTS = [0, 1, -1, 2, -2, 3, 4, 5, 7, 8, 16, 100, 127, 128, 255, 256, 32767, 65535, 65536,
        2**24, 2**31 - 2, 2**31 - 1, 2**31, -2**31, 2**32 - 1, 2**32, 2**40, 2**63 - 1,
        -2**63]
FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-45, 3.4e38, float("nan"), float("inf"),
          float("-inf"), 2.0**24, 2.0**31]
STRINGS = ["0", "1", "-1", "2", "3", "4", "5", "6", "7", "100", "65536", "1000000",
           "2147483647", "2147483648", "4294967295", "99999999999999999999", "", "x", "1e5",
           "[1,2]", "[]", "[1E40]", "[0.5,0.5,0.5]", "[0.5,0.5]", "nan", "gbtree", "dart",
           "gblinear", "multi:softprob", "binary:logistic", "rank:ndcg", "reg:squarederror",
           "survival:aft", "reg:quantileerror", "count:poisson", "c", "q", "int"]


def scan(data: bytes) -> dict[str, list[tuple[int, str]]]:
    """Positions of the mutable tokens of a UBJSON document XGBoost wrote.

    ``num``: a number (scalar or typed-array element) and its type; ``count``: the int64 of a
    count or length; ``str``: a string value (its ``L`` marker); ``typed``: a typed array
    (the position of its count, its element type).
    """
    slots: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    pos = 0

    def length() -> int:
        nonlocal pos
        slots["count"].append((pos + 1, "L"))
        (n,) = struct.unpack_from(">q", data, pos + 1)
        pos += 9
        if not 0 <= n <= len(data) - pos:  # a mutated count: stop scanning this member
            raise ValueError(f"count {n} past the end")
        return int(n)

    def value() -> None:
        nonlocal pos
        marker = chr(data[pos])
        pos += 1
        if marker in _WIDTH:
            slots["num"].append((pos, marker))
            pos += struct.calcsize(_WIDTH[marker])
        elif marker == "S":
            slots["str"].append((pos, "S"))
            n = length()
            pos += n
        elif marker == "{":
            while chr(data[pos]) != "}":
                n = length()
                pos += n
                value()
            pos += 1
        elif marker == "[":
            if chr(data[pos]) == "$":
                kind = chr(data[pos + 1])
                pos += 3
                slots["typed"].append((pos, kind))
                n = length()
                size = struct.calcsize(_WIDTH[kind])
                for i in range(n):
                    slots["num"].append((pos + i * size, kind))
                pos += n * size
            else:
                pos += 1
                for _ in range(length()):
                    value()

    value()
    return slots


def _pack(kind: str, number: Any) -> bytes:
    if kind == "d":
        return struct.pack(">f", float(number)) if abs(number) < 3.5e38 or number != number \
            else struct.pack(">f", float("inf") if number > 0 else float("-inf"))
    size = struct.calcsize(_WIDTH[kind])
    return int(number % (1 << (8 * size))).to_bytes(size, "big", signed=False)


def mutate_model(rng: random.Random, data: bytes, slots: dict[str, list[tuple[int, str]]]
                 ) -> bytes:
    """One mutation of a model member: grammar-preserving most of the time."""
    buf = bytearray(data)
    action = rng.random()
    if action < 0.40 and slots["num"]:
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            pos, kind = rng.choice(slots["num"])
            pool = FLOATS if kind == "d" else [*INTS, rng.randrange(-300, 300)]
            value = _pack(kind, rng.choice(pool))
            buf[pos:pos + len(value)] = value
        return bytes(buf)
    if action < 0.60 and slots["str"]:
        pos, _ = rng.choice(slots["str"])
        (n,) = struct.unpack_from(">q", data, pos + 1)
        new = rng.choice(STRINGS).encode()
        return bytes(buf[:pos + 1] + struct.pack(">q", len(new)) + new + buf[pos + 9 + n:])
    if action < 0.75 and slots["typed"]:
        pos, kind = rng.choice(slots["typed"])
        (n,) = struct.unpack_from(">q", data, pos + 1)
        size = struct.calcsize(_WIDTH[kind])
        start = pos + 9
        if n and rng.random() < 0.5:  # drop one element
            i = rng.randrange(n)
            return bytes(buf[:pos + 1] + struct.pack(">q", n - 1) + buf[start:start + i * size]
                         + buf[start + (i + 1) * size:])
        i = rng.randrange(n + 1)  # insert one element
        new = _pack(kind, rng.choice(FLOATS if kind == "d" else INTS))
        return bytes(buf[:pos + 1] + struct.pack(">q", n + 1) + buf[start:start + i * size]
                     + new + buf[start + i * size:])
    if action < 0.85 and slots["count"]:
        pos, _ = rng.choice(slots["count"])
        buf[pos:pos + 8] = _pack("L", rng.choice([*INTS, rng.randrange(0, 5000)]))
        return bytes(buf)
    for _ in range(rng.randint(1, 4)):  # raw bytes
        i = rng.randrange(len(buf))
        if rng.random() < 0.5:
            buf[i] ^= 1 << rng.randrange(8)
        else:
            buf[i] = rng.randrange(256)
    return bytes(buf)


_TYPE_OF = {"f": "d", "i1": "i", "u1": "U", "i2": "I", "i4": "l", "i8": "L"}


def encode(node: Any) -> bytes:
    """UBJSON as XGBoost writes it (the inverse of ``dryml_xgboost._ubjson.decode``)."""
    def text(value: str) -> bytes:
        raw = value.encode()
        return b"L" + struct.pack(">q", len(raw)) + raw

    if isinstance(node, dict):
        return b"{" + b"".join(text(k) + encode(v) for k, v in node.items()) + b"}"
    if isinstance(node, np.ndarray):
        kind = _TYPE_OF["f" if node.dtype.kind == "f" else f"{node.dtype.kind}{node.itemsize}"]
        big = node.astype(node.dtype.newbyteorder(">"))
        return b"[$" + kind.encode() + b"#L" + struct.pack(">q", node.size) + big.tobytes()
    if isinstance(node, list):
        return b"[#L" + struct.pack(">q", len(node)) + b"".join(encode(v) for v in node)
    if isinstance(node, str):
        return b"S" + text(node)
    if isinstance(node, bool) or node is None:
        return {True: b"T", False: b"F", None: b"Z"}[node]
    if isinstance(node, int):
        for kind, lo in (("i", 2**7), ("I", 2**15), ("l", 2**31)):
            if -lo < node < lo - 1:
                return kind.encode() + struct.pack(_WIDTH[kind], node)
        return b"L" + struct.pack(">q", node)
    return b"d" + struct.pack(">f", node)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))]
    return [path]


def mutate_config(rng: random.Random, manifest: dict[str, Any]) -> None:
    """Change one or two values of the XGBoost training configuration in the manifest."""
    entry = _entry(manifest)
    config = json.loads(entry["config"])
    for _ in range(rng.randint(1, 2)):
        path = rng.choice(_leaves(config))
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = rng.choice([*STRINGS, None, 1, True, [], {}])
    entry["config"] = json.dumps(config)


def make_cases(files: dict[str, bytes], count: int, seed: int) -> list[tuple[str, bytes]]:
    """``count`` mutated files (tag, bytes), 90% model-member and 10% config mutations."""
    rng = random.Random(seed)
    members = {tag: model_member(data) for tag, data in files.items()}
    slots = {tag: scan(member) for tag, member in members.items()}
    tags = sorted(files)
    cases = []
    for i in range(count):
        tag = tags[i % len(tags)]
        if rng.random() < 0.9:
            mutated = members[tag]
            for _ in range(rng.choice([1, 1, 1, 2])):
                mutated = mutate_model(rng, mutated, slots[tag] if mutated is members[tag]
                                       else scan_or_empty(mutated))
            cases.append((tag, with_model(files[tag], mutated)))
        else:
            cases.append((tag, with_manifest(files[tag], lambda m: mutate_config(rng, m))))
    return cases


def scan_or_empty(data: bytes) -> dict[str, list[tuple[int, str]]]:
    """Slots of an already mutated member (raw byte slots only when it no longer scans)."""
    try:
        return scan(data)
    except (IndexError, KeyError, struct.error, ValueError):
        return collections.defaultdict(list)


# ---------------------------------------------------------------- running cases
def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def worker(folder: str, start: int, validate: bool) -> None:
    """Load cases ``start``, ``start + 1``... of ``folder``; one result line per case."""
    from dryml import load_object
    from dryml.errors import DrymlError

    if not validate:
        import dryml_xgboost._serializers as ser

        def unchecked(meta: dict[str, Any], reader: Any) -> tuple[bytearray, Any]:
            return bytearray(reader.get_bytes(meta["model"])), meta.get("config")

        ser._checked_model = unchecked  # type: ignore[assignment]
    paths = sorted(Path(folder).glob("*.dry"))
    for i in range(start, len(paths)):
        print(f"B {i}", flush=True)
        try:
            held = load_object(paths[i])
        except DrymlError as exc:
            outcome = type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - what escapes is the finding
            outcome = f"other:{type(exc).__name__}:{str(exc)[:80]!r}"
        else:
            try:
                predict(held)
                outcome = "loaded"
            except Exception as exc:  # noqa: BLE001
                outcome = f"loaded, predict raised {type(exc).__name__}"
        print(f"R {i} {outcome}", flush=True)


def run_cases(cases: list[tuple[str, bytes]], *, timeout: float = 30.0, validate: bool = True,
              folder: str | None = None) -> dict[int, str]:
    """Load every case in worker subprocesses; outcome per case index.

    Outcomes: ``loaded``, ``loaded, predict raised X``, a dryml error class name,
    ``other:...`` (an exception outside dryml.errors), ``crash:SIGNAL`` or ``hang``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(folder or tmp)
        where.mkdir(parents=True, exist_ok=True)
        for i, (tag, data) in enumerate(cases):
            (where / f"{i:07d}-{tag}.dry").write_bytes(data)
        outcomes: dict[int, str] = {}
        start = 0
        while start < len(cases):
            start = _one_worker(where, start, timeout, validate, outcomes)
        return outcomes


def _one_worker(folder: Path, start: int, timeout: float, validate: bool,
                outcomes: dict[int, str]) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "xgbfuzz.py"), "worker", str(folder), str(start),
         "1" if validate else "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        preexec_fn=_limit, env=env, cwd=folder)
    assert proc.stdout is not None
    current, pending = start, b""
    first = True
    try:
        while True:
            # the first case also waits for the worker's imports
            ready, _, _ = select.select([proc.stdout], [], [], timeout * (3 if first else 1))
            if not ready:
                outcomes[current] = "hang"
                proc.kill()
                proc.wait()
                return current + 1
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                code = proc.wait()
                if current < len(list(folder.glob("*.dry"))) and current not in outcomes:
                    name = signal.Signals(-code).name if code < 0 else f"exit {code}"
                    outcomes[current] = f"crash:{name}"
                    return current + 1
                return current + 1
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                kind, _, rest = line.decode().partition(" ")
                index, _, outcome = rest.partition(" ")
                if kind == "B":
                    current, first = int(index), False
                elif kind == "R":
                    outcomes[int(index)] = outcome
                    current = int(index) + 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def summarize(outcomes: dict[int, str]) -> collections.Counter[str]:
    """Counts by outcome class (predict errors and 'other:' messages folded)."""
    counts: collections.Counter[str] = collections.Counter()
    for outcome in outcomes.values():
        key = outcome.split(":")[0] + (":" + outcome.split(":")[1]
                                       if outcome.startswith(("other", "crash")) else "")
        counts[key] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    w.add_argument("folder")
    w.add_argument("start", type=int)
    w.add_argument("validate", type=int)
    r = sub.add_parser("run")
    r.add_argument("--cases", type=int, default=2000)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--no-validation", action="store_true")
    r.add_argument("--keep", help="write the cases to this folder and keep them")
    args = parser.parse_args()
    if args.cmd == "worker":
        worker(args.folder, args.start, bool(args.validate))
        return
    cases = make_cases(saved_files(), args.cases, args.seed)
    outcomes = run_cases(cases, validate=not args.no_validation, folder=args.keep)
    for outcome, count in summarize(outcomes).most_common():
        print(f"{count:7d}  {outcome}")
    bad = sorted((i, o) for i, o in outcomes.items() if o.startswith(("crash", "hang", "other")))
    for i, outcome in bad[:40]:
        print(f"case {i} ({cases[i][0]}): {outcome}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    import xgbfuzz  # the classes and helpers under their importable name, not __main__

    xgbfuzz.main()
