"""Names a torch file supplies never import a module (issue 10, item 1).

Each hostile file is a real dryml-torch file with one name rewritten (checksums recomputed), so
the name reaches the code that resolves it. All are loaded in one fresh interpreter that
imported only dryml; afterwards none of the named modules may be in ``sys.modules``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dryml import Object, save_object
from dryml.testing.serializers import rewrite_manifest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("torch")
import torch  # noqa: E402

from dryml_torch.models import Loss, Optimizer, Sequential, TorchTrainable  # noqa: E402

#: Modules a hostile file names; none is imported by ``import torch``, each does harm when
#: imported (runs a program, pulls in the test harness, loads kernels or code nobody asked for).
HOSTILE = ("torch.distributed.run", "torch.utils.model_zoo",
           "torch.testing._internal.common_utils", "torch.optim._multi_tensor",
           "torch.nn.modules.linear_cross_entropy", "torch.utils.show_pickle")


class Holder(Object):
    """Holds a class as its argument."""

    def __init__(self, value: Any = None) -> None:
        self.value = value


def _trainable() -> bytes:
    model = TorchTrainable(Sequential([("Linear", {"in_features": 4, "out_features": 3})]),
                           Optimizer("SGD", lr=0.1), Loss("CrossEntropyLoss"))
    model._ensure_net()
    buf = io.BytesIO()
    save_object(model, buf)
    return buf.getvalue()


def _node(manifest: dict[str, Any], cls: str) -> dict[str, Any]:
    return next(n for n in manifest["objects"] if n["cls"] == cls)


def _set_layer(name: str) -> Any:
    def edit(manifest: dict[str, Any]) -> None:
        _node(manifest, "dryml_torch.models:Sequential")["args"][0][0]["items"][0] = name
    return edit


def _set_optimizer(name: str) -> Any:
    def edit(manifest: dict[str, Any]) -> None:
        _node(manifest, "dryml_torch.models:Optimizer")["args"][0] = name
    return edit


def _set_loss(name: str) -> Any:
    def edit(manifest: dict[str, Any]) -> None:
        _node(manifest, "dryml_torch.models:Loss")["args"][0] = name
    return edit


def _set_module_record(path: str) -> Any:
    def edit(manifest: dict[str, Any]) -> None:
        state = _node(manifest, "dryml_torch.models:TorchTrainable")["state"]
        state["model"]["meta"]["module"] = path
    return edit


def hostile_files(tmp: Path) -> dict[str, tuple[str, str]]:
    """{file name: (how it must load, the module it names)} written under ``tmp``."""
    buf = io.BytesIO()
    save_object(Holder(torch.nn.GELU), buf)
    holder, trainable = buf.getvalue(), _trainable()
    cases: dict[str, tuple[str, str]] = {}

    def write(name: str, data: bytes, edit: Any, expect: str, module: str) -> None:
        (tmp / f"{name}.dry").write_bytes(rewrite_manifest(data, edit))
        cases[name] = (expect, module)

    for i, module in enumerate(HOSTILE):
        def arg_class(manifest: dict[str, Any], module: str = module) -> None:
            manifest["objects"][0]["args"][0]["path"] = f"{module}:main"
        write(f"arg_class_{i}", holder, arg_class, "UntrustedClassError", module)
        last = module.rsplit(".", 1)[1]
        write(f"layer_{i}", trainable, _set_layer(module.removeprefix("torch.nn.")),
              "ConfigurationError", module)
        write(f"layer_attr_{i}", trainable, _set_layer(last), "ConfigurationError", module)
        write(f"optimizer_{i}", trainable, _set_optimizer(last), "ConfigurationError", module)
        write(f"loss_{i}", trainable, _set_loss(module.removeprefix("torch.nn.modules.")),
              "ConfigurationError", module)
        # Recorded for `dryml inspect` only: loading never resolves it.
        write(f"module_record_{i}", trainable, _set_module_record(f"{module}:main"), "ok",
              module)
    return cases


LOADER = """
import json, sys
import dryml
from dryml import load_object
from dryml.errors import DrymlError
before = set(sys.modules)
import torch
baseline = set(sys.modules)
cases = json.loads(sys.argv[1])
out = {}
for name, (expect, module) in cases.items():
    try:
        model = load_object(sys.argv[2] + "/" + name + ".dry", trust=["test_torch_trust"])
        if hasattr(model, "predict"):  # builds the network; then what training builds
            model.predict([[0.0, 1.0, 2.0, 3.0]])
            model.loss.build()
            model.optimizer.build([torch.nn.Parameter(torch.zeros(1))])
        got = "ok"
    except DrymlError as exc:
        got = type(exc).__name__
    except BaseException as exc:  # what the test must never see
        got = "NOT A DRYML ERROR: " + type(exc).__name__ + ": " + str(exc)[:300]
    out[name] = [got, module in baseline, module in sys.modules]
frameworks = sorted(m for m in ("tensorflow", "keras", "sklearn", "xgboost") if m in sys.modules)
print(json.dumps({"cases": out, "frameworks": frameworks, "torch_before": "torch" in before}))
"""


def test_names_in_a_file_never_import_a_module(tmp_path: Path) -> None:
    cases = hostile_files(tmp_path)
    here = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [here, *filter(None, [os.environ.get("PYTHONPATH")])])}
    run = subprocess.run([sys.executable, "-c", LOADER, json.dumps(cases), str(tmp_path)],
                         capture_output=True, text=True, timeout=300, env=env, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert not report["torch_before"] and report["frameworks"] == []
    for name, (got, in_baseline, imported) in report["cases"].items():
        expect, module = cases[name]
        assert not in_baseline, f"{module} is imported by torch itself: pick another module"
        assert (got, imported) == (expect, False), (name, module, got)
