"""Fuzz: thousands of mutated files; only dryml.errors exceptions may come out, never a hang."""

from __future__ import annotations

import copy
import io
import random
from typing import Any

import pytest
from dryfiles import json_paths, rewrite_manifest, sample_bytes

from dryml import load_object
from dryml.errors import DrymlError
from dryml.format import Limits

LIMITS = Limits(max_member_bytes=64 * 2**20, max_manifest_bytes=16 * 2**20)
JUNK: list[Any] = [None, True, 0, -1, 2**70, 1.5, float("inf"), "", "x", "../x", "os:system",
                   [], {}, [1, [2]], {"__dry__": "tuple"}, {"__dry__": "object", "id": 1},
                   {"__dry__": "codec", "codec": "numpy.ndarray", "package": "dryml-core",
                    "data": {"dtype": "O", "shape": [1], "b64": ""}},
                   {"__dry__": "codec", "codec": "numpy.ndarray", "package": "dryml-core",
                    "data": {"dtype": "<f8", "shape": [10**12], "b64": ""}},
                   {"__dry__": "bytes", "member": "m000001.npy"},
                   {"__dry__": "dict", "items": [[[1], 2]]}, {"__dry__": "class", "path": 3}]


def _mutate_manifest(rng: random.Random, manifest: dict[str, Any]) -> None:
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in json_paths(manifest) if p]
        path = rng.choice(paths)
        parent = manifest
        for key in path[:-1]:
            parent = parent[key]
        action = rng.random()
        if action < 0.6:
            parent[path[-1]] = copy.deepcopy(rng.choice(JUNK))
        elif action < 0.8 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], int) and not isinstance(parent[path[-1]], bool):
            parent[path[-1]] += rng.choice([-1, 1, 64, -64, 2**31])
        else:
            parent[path[-1]] = copy.deepcopy(parent[rng.choice(list(
                parent.keys() if isinstance(parent, dict) else range(len(parent))))])


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    choice = rng.random()
    buf = bytearray(data)
    if choice < 0.4:
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif choice < 0.6:
        return bytes(buf[: rng.randrange(len(buf))])
    elif choice < 0.8:
        start = rng.randrange(len(buf))
        buf[start:start + rng.randint(1, 64)] = bytes(rng.randrange(256) for _ in range(8))
    else:
        pos = rng.randrange(len(buf))
        return bytes(buf[:pos] + bytes(rng.randint(1, 100)) + buf[pos:])
    return bytes(buf)


def _check(data: bytes) -> str:
    try:
        load_object(io.BytesIO(data), limits=LIMITS)
    except DrymlError as exc:
        return type(exc).__name__
    return "loaded"


@pytest.fixture(scope="module")
def good() -> bytes:
    return sample_bytes()


def test_fuzz_raw_byte_mutations(good: bytes) -> None:
    rng = random.Random(1234)
    outcomes: dict[str, int] = {}
    for _ in range(1500):
        name = _check(_mutate_bytes(rng, good))
        outcomes[name] = outcomes.get(name, 0) + 1
    assert outcomes.get("ChecksumError", 0) > 100, outcomes
    assert sum(outcomes.values()) == 1500


def test_fuzz_structured_manifest_mutations(good: bytes) -> None:
    rng = random.Random(99)
    outcomes: dict[str, int] = {}
    for _ in range(2000):
        data = rewrite_manifest(good, lambda m: _mutate_manifest(rng, m))
        name = _check(data)
        outcomes[name] = outcomes.get(name, 0) + 1
    assert outcomes.get("FormatError", 0) > 100, outcomes
    assert sum(outcomes.values()) == 2000
