"""The torch zoo: modules with buffers, tied weights, optimizer and LR scheduler state, every
dtype ``torch.save`` stores, and non-contiguous / channels-last tensors.

Each case is saved three ways from one process: with dryml (a :class:`ZooCase` Object that
``store.put`` s its module / optimizer / scheduler / tensor and restores them with torch's
``load_state_dict`` idiom), with ``torch.save`` of the state dicts (loaded with
``weights_only=True``), and with ``pickle`` of the live objects. Fresh processes load each
kind and :func:`fingerprint` what they got: every tensor of every state dict (dtype, shape,
strides, storage sharing, sha256 of the bits), every other state value, the module's output on
a fixed input, and, for training state, the weights and learning rate after two more steps.
The fingerprints must equal the original's bit for bit.

Runnable on its own: ``python tests/torch/torch_zoo.py`` prints the counts for dryml,
``torch.save`` and pickle. Importing this module imports no torch (a loading process must
show which frameworks the load itself imported).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dryml import Object

__all__ = ["EXCLUDED_DTYPES", "WAYS", "ZooCase", "cases", "compare", "counts", "fingerprint",
           "load_all", "run", "save_all"]

WAYS = ("dryml", "torch.save", "pickle")
#: dtypes torch has but cannot store at all (``torch.save`` refuses them: "not recognized"):
#: the sub-byte shell dtypes, which have no storage format of their own.
EXCLUDED_DTYPES = tuple(f"{kind}{bits}" for kind in ("int", "uint") for bits in range(1, 8))
#: dtypes stored as their bits (random bytes: every NaN payload and subnormal included).
DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64",
          "float16", "bfloat16", "float32", "float64", "complex32", "complex64", "complex128",
          "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
          "float8_e8m0fnu", "float4_e2m1fn_x2", "bits8", "bits16", "bits1x8", "bits2x4",
          "bits4x2")
QUANTIZED = ("qint8", "quint8", "qint32", "quint4x2", "quint2x4")


# -- cases ----------------------------------------------------------------------------------

class Case:
    """One zoo entry: ``fresh()`` builds its parts untrained (seeded), ``prepare`` trains them."""

    def __init__(self, kind: str, fresh: Callable[[], dict[str, Any]],
                 inputs: Callable[[], Any] | None = None, steps: int = 3) -> None:
        self.kind, self.fresh, self.inputs, self.steps = kind, fresh, inputs, steps


def _seeded(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    def fresh() -> dict[str, Any]:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build()
    return fresh


def _transposed_linear() -> Any:
    import torch

    lin = torch.nn.Linear(5, 7)
    lin.weight = torch.nn.Parameter(lin.weight.detach().t().contiguous().t())  # (1, 5) strides
    return lin


def _module(build: Callable[[], Any], shape: tuple[int, ...], memory_format: str | None = None,
            integer: int = 0, dtype: str | None = None) -> Case:
    def parts() -> dict[str, Any]:
        import torch

        model = build()
        if memory_format:
            model = model.to(memory_format=getattr(torch, memory_format))
        return {"model": model}

    def inputs() -> Any:
        import torch

        gen = torch.Generator().manual_seed(1)
        if integer:
            return torch.randint(0, integer, shape, generator=gen)
        x = torch.randn(shape, generator=gen)
        if dtype:
            x = x.to(getattr(torch, dtype))
        return x.to(memory_format=getattr(torch, memory_format)) if memory_format else x

    return Case("module", _seeded(parts), inputs)


def _training(optimizer: str, opt_kwargs: dict[str, Any],
              sched: Callable[[Any], Any] | None = None, steps: int = 3) -> Case:
    def parts() -> dict[str, Any]:
        import torch

        model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.BatchNorm1d(12),
                                    torch.nn.Tanh(), torch.nn.Linear(12, 2))
        opt = getattr(torch.optim, optimizer)(model.parameters(), **opt_kwargs)
        out = {"model": model, "opt": opt}
        if sched is not None:
            out["sched"] = sched(opt)
        return out

    def inputs() -> Any:
        import torch

        gen = torch.Generator().manual_seed(2)
        return torch.randn(16, 6, generator=gen), torch.randn(16, 2, generator=gen)

    return Case("train", _seeded(parts), inputs, steps)


def _tensor(make: Callable[[], Any]) -> Case:
    return Case("tensor", _seeded(lambda: {"value": make()}))


def _random_bits(dtype_name: str, shape: tuple[int, ...]) -> Any:
    import numpy as np
    import torch

    dtype = getattr(torch, dtype_name)
    count = int(np.prod(shape))
    raw = np.random.default_rng(len(dtype_name)).integers(0, 256, count * dtype.itemsize,
                                                          dtype=np.uint8)
    if dtype == torch.bool:
        raw = raw % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex32 is "experimental"
        return torch.from_numpy(raw).view(dtype).reshape(shape)


def _quantized(name: str) -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors are deprecated
        x = torch.randn(4, 6)
        if name == "quint8":  # per channel, the other common scheme
            return torch.quantize_per_channel(x, torch.rand(4) + 0.1, torch.arange(4), 0,
                                              torch.quint8)
        return torch.quantize_per_tensor(x, 0.05, 3, getattr(torch, name))


def _layouts() -> dict[str, Callable[[], Any]]:
    import torch

    def conv_weight() -> Any:
        return torch.nn.Conv2d(3, 16, 3).weight.detach().to(memory_format=torch.channels_last)

    return {
        "channels_last_conv_weight": conv_weight,
        "channels_last_3d": lambda: torch.randn(2, 3, 4, 5, 6).to(
            memory_format=torch.channels_last_3d),
        "transposed": lambda: torch.randn(30, 20).t(),
        "permuted_bfloat16": lambda: torch.randn(4, 5, 6).to(torch.bfloat16).permute(2, 0, 1),
        "sliced_view": lambda: torch.randn(10, 20)[2:5, 3:17:2],
        "column_of_a_matrix": lambda: torch.randn(40, 30)[:, 7],
        "expanded": lambda: torch.randn(20).expand(16, 20),
        "conjugate_view": lambda: torch.randn(5, 3, dtype=torch.complex64).conj(),
        "zero_dim": lambda: torch.tensor(3.5),
        "empty_transposed": lambda: torch.zeros(0, 3).t(),
        "parameter": lambda: torch.nn.Parameter(torch.randn(3, 4)),
        "requires_grad_leaf": lambda: torch.randn(5, requires_grad=True),
    }


def _cases() -> dict[str, Case]:
    import torch
    import torch_zoo_modules as zm

    nn = torch.nn
    cases: dict[str, Case] = {
        "module/mlp_batchnorm1d": _module(lambda: nn.Sequential(
            nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)), (4, 8)),
        "module/conv_batchnorm2d_channels_last": _module(lambda: nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3)),
            (2, 3, 10, 10), "channels_last"),
        "module/conv3d_batchnorm3d_channels_last_3d": _module(lambda: nn.Sequential(
            nn.Conv3d(2, 4, 3), nn.BatchNorm3d(4)), (2, 2, 5, 5, 5), "channels_last_3d"),
        "module/tied_embedding_head": _module(zm.TiedLM, (3, 5), integer=50),
        "module/lstm_2_layers": _module(lambda: nn.LSTM(4, 8, num_layers=2, batch_first=True),
                                        (2, 5, 4)),
        "module/gru_bidirectional": _module(lambda: nn.GRU(4, 6, bidirectional=True), (5, 2, 4)),
        "module/transformer_encoder_layer": _module(lambda: nn.TransformerEncoderLayer(
            16, 2, dim_feedforward=32, dropout=0.0, batch_first=True), (2, 5, 16)),
        "module/instance_norm_running_stats": _module(lambda: nn.InstanceNorm2d(
            3, affine=True, track_running_stats=True), (2, 3, 6, 6)),
        "module/layer_group_norm_prelu": _module(lambda: nn.Sequential(
            nn.LayerNorm(8), nn.Linear(8, 8), nn.GroupNorm(2, 8), nn.PReLU(8)), (4, 8)),
        "module/buffers_of_every_kind": _module(zm.Buffers, (3, 6)),
        "module/extra_state": _module(zm.WithExtra, (3, 4)),
        "module/transposed_parameter": _module(_transposed_linear, (3, 5)),
        "module/buffers_viewing_a_parameter": _module(zm.SharedViews, (3, 4)),
        "module/bfloat16_linear": _module(lambda: nn.Linear(8, 4).to(torch.bfloat16), (3, 8),
                                          dtype="bfloat16"),
        "train/sgd_momentum_steplr": _training(
            "SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True,
                              "weight_decay": 1e-4},
            lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5)),
        "train/adam_cosine": _training(
            "Adam", {"lr": 0.01},
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10)),
        "train/adamw_amsgrad_onecycle": _training(
            "AdamW", {"lr": 0.01, "amsgrad": True},
            lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=20)),
        "train/rmsprop_plateau": _training(
            "RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5},
            lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=0, factor=0.5)),
        "train/adagrad_exponential": _training(
            "Adagrad", {"lr": 0.05},
            lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
        "train/nadam_multistep": _training(
            "NAdam", {"lr": 0.01},
            lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[1, 3])),
        "train/adam_warmup_then_cosine": _training(
            "Adam", {"lr": 0.01},
            lambda o: torch.optim.lr_scheduler.SequentialLR(o, [
                torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=2),
                torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=8)], milestones=[2])),
        "train/sgd_cyclic_momentum": _training(
            "SGD", {"lr": 0.01, "momentum": 0.9},
            lambda o: torch.optim.lr_scheduler.CyclicLR(o, 0.001, 0.1, step_size_up=2)),
        "train/sgd_lambda_lr": _training(
            "SGD", {"lr": 0.1},
            lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda epoch: 0.9 ** epoch)),
        "train/radam_decoupled_weight_decay": _training(
            "RAdam", {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.01}),
        "train/lbfgs": _training("LBFGS", {"lr": 0.5, "history_size": 4, "max_iter": 3}),
    }
    known = {name for name in (*DTYPES, *QUANTIZED)  # an older torch lacks a few
             if isinstance(getattr(torch, name, None), torch.dtype)}
    for name in DTYPES:
        if name in known:
            cases[f"dtype/{name}"] = _tensor(lambda name=name: _random_bits(name, (3, 5)))
    for name in QUANTIZED:
        if name in known:
            cases[f"dtype/{name}"] = _tensor(lambda name=name: _quantized(name))
    for name, make in _layouts().items():
        cases[f"layout/{name}"] = _tensor(make)
    return cases


_CACHE: dict[str, dict[str, Case]] = {}


def cases() -> dict[str, Case]:
    """Every zoo case by name (built on first use: imports torch)."""
    if not _CACHE:
        _CACHE["cases"] = _cases()
    return _CACHE["cases"]


# -- the dryml Object -------------------------------------------------------------------------

class ZooCase(Object):
    """A zoo case as a user writes it: parts rebuilt in ``__init__``, state restored on load."""

    def __init__(self, case: str) -> None:
        self.case = case
        self.parts = cases()[case].fresh()
        self.stored: dict[str, Any] | None = None  # prints of what store.get gave back

    def save_object_imp(self, store: Any) -> None:
        for name, value in self.parts.items():
            store.put(name, value)

    def load_object_imp(self, store: Any) -> None:
        states = {name: store.get(name) for name in store.names()}
        self.stored = state_prints(states)  # before load_state_dict, which may edit them
        restore(self.parts, states)


def restore(parts: dict[str, Any], states: dict[str, Any]) -> None:
    """torch's idiom: ``load_state_dict`` into the rebuilt parts (a tensor is itself)."""
    if "value" in states:
        parts["value"] = states["value"]
        return
    for name in ("model", "opt", "sched"):
        if name in parts:
            parts[name].load_state_dict(states[name])


def _step(case: Case, parts: dict[str, Any]) -> None:
    import torch

    model, opt, sched = parts["model"], parts["opt"], parts.get("sched")
    x, y = case.inputs() if case.inputs else (None, None)
    model.train()

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
        sched.step(float(loss) + 1.0)  # never improves: the plateau logic acts
    elif sched is not None:
        sched.step()


def prepare(case: Case, parts: dict[str, Any]) -> None:
    """Train (optimizer steps) or update running statistics, so every state is non-trivial."""
    import torch

    if case.kind == "train":
        for _ in range(case.steps):
            _step(case, parts)
    elif case.kind == "module":
        model = parts["model"]
        model.train()
        x = case.inputs()
        if x.is_floating_point():
            x = x * 1.5 + 0.5  # not the input the outputs are compared on
        with torch.no_grad():
            for _ in range(case.steps):
                model(x)


# -- fingerprints -----------------------------------------------------------------------------

def _bits(t: Any) -> str:
    import torch

    t = t.detach()
    if t.is_quantized:
        t = t.int_repr()
    if t.is_complex():
        t = torch.view_as_real(t.resolve_conj())
    size = t.element_size()
    carrier = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[size]
    return hashlib.sha256(t.view(carrier).contiguous().numpy().tobytes()).hexdigest()


def _tensor_print(t: Any) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"dtype": str(t.dtype), "shape": list(t.shape),
                           "stride": list(t.stride()), "bits": _bits(t),
                           "requires_grad": t.requires_grad,
                           "parameter": isinstance(t, torch.nn.Parameter)}
    if t.is_quantized:
        out["qscheme"] = str(t.qscheme())
    return out


def _tree(value: Any, tensors: list[Any]) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return {"tensor": _tensor_print(value)}
    if isinstance(value, dict):
        return {"dict": [[_tree(k, tensors), _tree(v, tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {type(value).__name__: [_tree(v, tensors) for v in value]}
    if isinstance(value, float):
        return {"float": repr(value)}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return {"repr": type(value).__qualname__}  # e.g. a function in a scheduler's state


def _sharing(tensors: list[Any]) -> list[list[list[int]]]:
    """Which tensors of a state share memory (tied weights, views of one buffer): groups of
    [position, storage offset relative to the group's first]."""
    groups: dict[Any, list[tuple[int, int]]] = {}
    for i, t in enumerate(tensors):
        if t.is_quantized or t.numel() == 0:
            continue
        key = (t.untyped_storage().data_ptr(), t.dtype)
        groups.setdefault(key, []).append((i, t.storage_offset()))
    return sorted([[i, offset - min(o for _, o in g)] for i, offset in g]
                  for g in groups.values() if len(g) > 1)


def _state_print(value: Any) -> dict[str, Any]:
    tensors: list[Any] = []
    return {"tree": _tree(value, tensors), "shared": _sharing(tensors)}


def live_states(parts: dict[str, Any]) -> dict[str, Any]:
    """The state dicts of the live parts (a tensor is its own state)."""
    if "value" in parts:
        return {"value": parts["value"]}
    return {name: part.state_dict() for name, part in parts.items()}


def state_prints(states: dict[str, Any]) -> dict[str, Any]:
    """The fingerprints of a case's states (by part)."""
    return {k: _state_print(v) for k, v in states.items()}


def fingerprint(case_name: str, parts: dict[str, Any], stored: dict[str, Any]
                ) -> dict[str, Any]:
    """What must come back bit for bit: stored and live states, outputs, two more steps.

    ``stored``: :func:`state_prints` of what the loader returned, taken before restoring.
    """
    import torch

    case = cases()[case_name]
    out: dict[str, Any] = {"live": state_prints(live_states(parts)), "stored": stored}
    if case.kind == "module":
        model = parts["model"]
        model.eval()
        with torch.no_grad():
            result = model(case.inputs())
        tensors: list[Any] = []
        out["output"] = _tree(result, tensors)
        params = list(model.named_parameters(remove_duplicate=False))
        out["tied"] = sorted([a, b] for (a, p), (b, q) in
                             ((x, y) for i, x in enumerate(params) for y in params[i + 1:])
                             if p is q)
    elif case.kind == "train":
        for _ in range(2):
            _step(case, parts)
        out["after_two_steps"] = _state_print(parts["model"].state_dict())
        out["lr_after"] = [repr(g["lr"]) for g in parts["opt"].param_groups]
    return out


# -- the three ways, save side and load side --------------------------------------------------

def _torch_state(parts: dict[str, Any]) -> Any:
    states = live_states(parts)
    return states["value"] if "value" in parts else states


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def save_all(folder: str) -> dict[str, Any]:
    """Build, prepare and save every case three ways; the originals' fingerprints."""
    import torch

    from dryml import save_object

    torch.set_num_threads(1)
    report: dict[str, Any] = {}
    for name in cases():
        entry: dict[str, Any] = {"save": {}}
        obj = ZooCase(name)
        prepare(cases()[name], obj.parts)
        stem = os.path.join(folder, name.replace("/", "__"))
        for way in WAYS:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if way == "dryml":
                        save_object(obj, stem + ".dry")
                    elif way == "torch.save":
                        torch.save(_torch_state(obj.parts), stem + ".pt")
                    else:
                        Path(stem + ".pkl").write_bytes(pickle.dumps(obj.parts))
                entry["save"][way] = "ok"
            except Exception as exc:  # noqa: BLE001 - recorded: a way that cannot save
                entry["save"][way] = _error(exc)
        entry["original"] = fingerprint(name, obj.parts, state_prints(live_states(obj.parts)))
        report[name] = entry
    return report


def load_one(folder: str, name: str, way: str) -> dict[str, Any]:
    """Load one case the given way (in this process); its fingerprint or the error."""
    import torch

    stem = os.path.join(folder, name.replace("/", "__"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if way == "dryml":
                from dryml import load_object

                obj = load_object(stem + ".dry", trust=["torch_zoo"])
                parts, stored = obj.parts, obj.stored
            elif way == "torch.save":
                loaded = torch.load(stem + ".pt", weights_only=True)
                parts = cases()[name].fresh()
                states = {"value": loaded} if "value" in parts else loaded
                stored = state_prints(states)
                restore(parts, states)
            else:
                parts = pickle.loads(Path(stem + ".pkl").read_bytes())  # noqa: S301 - the baseline
                stored = state_prints(live_states(parts))
        return {"print": fingerprint(name, parts, stored)}
    except Exception as exc:  # noqa: BLE001 - recorded as this way's failure
        return {"error": _error(exc), "trace": traceback.format_exc()[-1500:]}


FRAMEWORKS = ("torch", "tensorflow", "keras", "sklearn", "xgboost", "jax")


def load_all(folder: str, way: str, names: list[str]) -> dict[str, Any]:
    """Load the named cases in this (fresh) process; which frameworks got imported."""
    before = sorted(m for m in FRAMEWORKS if m in sys.modules)
    out: dict[str, Any] = {"before": before, "cases": {}}
    for name in names:
        out["cases"][name] = load_one(folder, name, way)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
    out["after"] = sorted(m for m in FRAMEWORKS if m in sys.modules)
    return out


def compare(saved: dict[str, Any], loaded: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """{way: {case: "ok" or why not}} from :func:`save_all` and each way's :func:`load_all`."""
    verdicts: dict[str, dict[str, str]] = {}
    for way in WAYS:
        verdicts[way] = {}
        for name, entry in saved.items():
            if entry["save"][way] != "ok":
                verdicts[way][name] = "save: " + entry["save"][way]
                continue
            got = loaded[way]["cases"][name]
            if "error" in got:
                verdicts[way][name] = "load: " + got["error"]
            elif got["print"] != entry["original"]:
                diff = sorted(k for k in entry["original"]
                              if got["print"].get(k) != entry["original"][k])
                verdicts[way][name] = f"differs: {diff}"
            else:
                verdicts[way][name] = "ok"
    return verdicts


def run(folder: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, str]]]:
    """Save in one fresh process, load each way in its own fresh process; the verdicts."""
    import subprocess

    here = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [here, *filter(None, [os.environ.get("PYTHONPATH")])])}

    def python(code: str) -> Any:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=600, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-4000:])
        return json.loads(done.stdout.strip().splitlines()[-1])

    saved = python(f"import json, torch_zoo; print(json.dumps(torch_zoo.save_all({folder!r})))")
    names = sorted(saved)
    loaded = {}
    for way in WAYS:
        # Only dryml is imported before the load (torch_zoo imports no framework).
        loaded[way] = python(
            "import json, dryml, torch_zoo\n"
            f"print(json.dumps(torch_zoo.load_all({folder!r}, {way!r}, {names!r})))")
    return saved, loaded, compare(saved, loaded)


def counts(verdicts: dict[str, dict[str, str]]) -> dict[str, str]:
    """``{way: "ok/total"}``."""
    return {way: f"{sum(v == 'ok' for v in got.values())}/{len(got)}"
            for way, got in verdicts.items()}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        _, loaded_, verdicts_ = run(tmp)
    print(json.dumps(counts(verdicts_)))
    for way_, got_ in verdicts_.items():
        for name_, verdict_ in got_.items():
            if verdict_ != "ok":
                print(f"{way_:10} {name_:45} {verdict_}")
    print("imported by the dryml loads:", loaded_["dryml"]["after"])
