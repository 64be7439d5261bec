"""The zoo (issue 11): every estimator ``sklearn.utils.all_estimators()`` lists that constructs
with its defaults and fits on a small bundled data set (``sklearn_zoo.py``) is saved, loaded in
one fresh process that has imported only dryml, and compared bit for bit with the same fitted
object unpickled in that process (methods that give different results for two unpickled copies
of one model, e.g. ``BernoulliRBM.score_samples``, are not deterministic and are left out).
The load must import scikit-learn and no other framework.

The same list goes through pickle and skops (``skops.io.dumps``/``loads`` with its default
trusted types) for the counts; run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("sklearn")
    pytest.importorskip("skops")

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import sklearn_zoo as zoo  # noqa: E402

from dryml import save_object  # noqa: E402

FRAMEWORKS = {"torch", "tensorflow", "keras", "xgboost", "jax", "sklearn"}

CHILD = textwrap.dedent("""
    import json, pickle, sys, warnings
    sys.path.insert(0, sys.argv[2])
    import sklearn_zoo as zoo  # dryml and numpy only
    from dryml import load_object

    cases = json.loads(open(sys.argv[1]).read())
    before = set(sys.modules)
    loaded, errors = {}, {}
    for name, case in cases.items():
        try:
            loaded[name] = load_object(case["dry"]).model
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"[:300]
    imported = sorted({m.split(".")[0] for m in set(sys.modules) - before})
    result = {"imported": imported, "errors": errors, "same": {}, "nondeterministic": {}}
    for name, case in cases.items():
        raw = open(case["pickle"], "rb").read()
        first, second = pickle.loads(raw), pickle.loads(raw)
        ref, again = zoo.outputs(first, case["kind"]), zoo.outputs(second, case["kind"])
        unstable = sorted(k for k in ref if k not in again or not zoo.same(
            {k: ref[k]}, {k: again[k]}))
        ref = {k: v for k, v in ref.items() if k not in unstable}
        result["nondeterministic"][name] = unstable
        if name in loaded:
            got = zoo.outputs(loaded[name], case["kind"])
            got = {k: v for k, v in got.items() if k not in unstable}
            # a model with no output to compare (PatchExtractor: fit learns nothing) must at
            # least come back with the same parameters
            result["same"][name] = zoo.same(ref, got) and (bool(ref) or repr(
                loaded[name].get_params()) == repr(first.get_params()))
    print(json.dumps(result))
""")


def _skops_round_trips(model: Any, kind: str) -> bool:
    """skops.io with its default trusted types gives the same outputs as a pickled copy."""
    import skops.io

    try:
        data = skops.io.dumps(model)
        back = skops.io.loads(data)
    except Exception:  # noqa: BLE001 - refused or unsupported: not a round trip
        return False
    ref = zoo.outputs(pickle.loads(pickle.dumps(model)), kind)
    again = zoo.outputs(pickle.loads(pickle.dumps(model)), kind)
    stable = {k for k in ref if k in again and zoo.same({k: ref[k]}, {k: again[k]})}
    got = zoo.outputs(back, kind)
    if not ref:  # nothing to compare: the parameters at least
        return type(back) is type(model) and repr(back.get_params()) == repr(
            model.get_params())
    return bool(stable) and zoo.same({k: ref[k] for k in stable},
                                     {k: got[k] for k in stable if k in got})


#: One thread per native pool: on CI's two shared cores, OpenMP/BLAS threads spinning against
#: each other make fitting ~4x slower.
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS")}


def test_every_fitting_estimator_round_trips_in_a_fresh_process(tmp_path: Path) -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        _zoo(tmp_path)


def _zoo(tmp_path: Path) -> None:
    fitted, skipped = zoo.build_zoo()
    assert len(fitted) > 150, skipped  # the catalogue, not a handful
    cases: dict[str, dict[str, str]] = {}
    pickled = 0
    for name, (model, kind) in fitted.items():
        holder = zoo.Holder()
        holder.model = model
        save_object(holder, tmp_path / f"{name}.dry")
        (tmp_path / f"{name}.pkl").write_bytes(pickle.dumps(model))
        pickled += 1
        cases[name] = {"dry": str(tmp_path / f"{name}.dry"),
                       "pickle": str(tmp_path / f"{name}.pkl"), "kind": kind}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "cases.json"),
                           str(HERE)], capture_output=True, text=True, timeout=900,
                          cwd=tmp_path, env={**os.environ, **ONE_THREAD})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    dryml_ok = sorted(n for n, same in result["same"].items() if same)
    print(f"\nzoo: {len(fitted) + len(skipped)} estimators listed, {len(fitted)} fit with "
          f"defaults; round trips: dryml {len(dryml_ok)}, pickle {pickled}; not "
          f"deterministic: { {n: m for n, m in result['nondeterministic'].items() if m} }; "
          f"load imported: {sorted(set(result['imported']) & FRAMEWORKS)}")
    if os.environ.get("DRYML_ZOO_COUNTS"):  # skops' count for the closing note (slower)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            skops_ok = sorted(n for n, (m, k) in fitted.items() if _skops_round_trips(m, k))
        print(f"zoo: skops {len(skops_ok)}; skops fails: "
              f"{sorted(set(fitted) - set(skops_ok))}; not fitting: {sorted(skipped)}")
    assert result["errors"] == {}
    assert sorted(n for n, same in result["same"].items() if not same) == []
    assert len(dryml_ok) == len(fitted)
    assert set(result["imported"]) & FRAMEWORKS == {"sklearn"}
