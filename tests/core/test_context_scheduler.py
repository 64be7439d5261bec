"""The scheduler grants fractions of fake GPUs and CPUs and never grants more than exists."""

from __future__ import annotations

import subprocess
import sys
import threading
import types
import warnings
from typing import Any

import pynvml as _pynvml  # the real one: stand-ins below raise its errors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dryml.context import (
    FakeCpuProvider,
    FakeGpuProvider,
    NvmlProvider,
    ResourcesUnavailableError,
)
from dryml.context._resources import normalize_requirement
from dryml.context._scheduler import Scheduler
from dryml.errors import ContextIncompatibilityError, DrymlWarning


def scheduler(gpus: int = 4) -> Scheduler:
    return Scheduler([FakeCpuProvider(8), FakeGpuProvider(gpus, memory_total=8 << 30)])


def req(reqs: dict) -> dict:
    return normalize_requirement(reqs)


def test_fractional_gpus_are_shared_up_to_one_and_no_further() -> None:
    s = scheduler()
    a = s.try_acquire(req({"tf": {"gpu/1": 0.5}, "torch": {"gpu/1": 0.5}}))
    assert a is not None
    assert a.shares["tf"]["gpu/1"] == 0.5 and a.shares["torch"]["gpu/1"] == 0.5
    assert s.try_acquire(req({"torch": {"gpu/1": 0.1}})) is None
    s.release(a)
    third = [s.try_acquire(req({"torch": {"gpu/1": 1 / 3}})) for _ in range(3)]
    assert all(g is not None for g in third)
    assert s.try_acquire(req({"torch": {"gpu/1": 0.01}})) is None


def test_whole_counts_take_free_whole_devices() -> None:
    s = scheduler()
    half = s.try_acquire(req({"tf": {"gpu/0": 0.5}}))
    assert half is not None
    three = s.try_acquire(req({"torch": {"num_gpus": 3}}))
    assert three is not None
    assert sorted(three.shares["torch"]) == ["cpu/1", "gpu/1", "gpu/2", "gpu/3"]
    assert s.try_acquire(req({"torch": {"num_gpus": 1}})) is None


def test_an_empty_requirement_gets_one_cpu_and_no_gpu() -> None:
    grant = scheduler().try_acquire(req({}))
    assert grant is not None
    assert dict(grant.shares) == {"default": {"cpu/0": 1.0}}


def test_four_half_gpu_requests_run_two_per_gpu_and_never_more() -> None:
    s = scheduler(gpus=2)
    half = req({"torch": {"num_gpus": 0.5}})
    assert half["torch"].gpu_share == 0.5 and half["torch"].as_dict() == {
        "num_gpus": 0.5, "num_cpus": 1}
    grants = [s.try_acquire(half) for _ in range(4)]
    assert all(g is not None for g in grants)
    per_gpu: dict[str, int] = {}
    for g in grants:
        assert g is not None
        (gpu,) = [n for n in g.shares["torch"] if n.startswith("gpu/")]
        assert g.shares["torch"][gpu] == 0.5
        per_gpu[gpu] = per_gpu.get(gpu, 0) + 1
    assert per_gpu == {"gpu/0": 2, "gpu/1": 2}
    assert s.try_acquire(half) is None  # a fifth waits: no GPU has half left
    assert s.try_acquire(req({"torch": {"num_gpus": 0.25}})) is None
    first = grants[0]
    assert first is not None
    s.release(first)
    assert s.try_acquire(half) is not None


def test_a_gpu_share_fills_one_gpu_before_starting_on_the_next() -> None:
    s = scheduler(gpus=2)
    quarter = s.try_acquire(req({"torch": {"num_gpus": 0.25}}))
    assert quarter is not None and "gpu/0" in quarter.shares["torch"]
    # the next share goes beside the first, so a whole GPU stays free for a whole request
    assert "gpu/0" in (s.try_acquire(req({"tf": {"num_gpus": 0.75}})) or quarter).shares["tf"]
    assert s.try_acquire(req({"torch": {"num_gpus": 1}})) is not None


def test_a_context_with_a_gpu_share_satisfies_checks_for_that_share_only() -> None:
    from dryml.context._state import ComputeContext

    grant = scheduler(gpus=2).try_acquire(req({"torch": {"num_gpus": 0.5}}))
    assert grant is not None
    ctx = ComputeContext(grant.shares)
    assert ctx.satisfies({"torch": {"num_gpus": 0.5}})
    assert ctx.satisfies({"torch": {"num_gpus": 0.25}})
    assert not ctx.satisfies({"torch": {"num_gpus": 0.75}})
    assert not ctx.satisfies({"torch": {"num_gpus": 1}})
    with pytest.raises(ResourcesUnavailableError, match="can never be met"):
        scheduler(gpus=0).check_possible(req({"torch": {"num_gpus": 0.5}}))


def test_impossible_requests_fail_at_once_saying_what_exists() -> None:
    s = scheduler(gpus=2)
    with pytest.raises(ResourcesUnavailableError, match=r"2 GPUs \(gpu/0\.\.gpu/1\)"):
        s.check_possible(req({"torch": {"num_gpus": 3}}))
    with pytest.raises(ResourcesUnavailableError, match="gpu/5 does not exist"):
        s.check_possible(req({"torch": {"gpu/5": 0.5}}))
    with pytest.raises(ResourcesUnavailableError, match="can never be met"):
        s.check_possible(req({"tf": {"gpu/0": 0.75}, "torch": {"gpu/0": 0.5}}))
    s.check_possible(req({"torch": {"num_gpus": 2}}))  # possible: no error


def test_a_nested_request_cannot_count_on_what_its_caller_holds() -> None:
    s = scheduler(gpus=1)
    outer = s.try_acquire(req({"tf": {"gpu/0": 0.75}}))
    assert outer is not None
    with pytest.raises(ResourcesUnavailableError, match="calling contexts hold"):
        s.check_possible(req({"torch": {"gpu/0": 0.5}}), held=(outer,))
    s.check_possible(req({"torch": {"gpu/0": 0.25}}), held=(outer,))


def test_a_nested_request_cannot_count_on_what_any_caller_up_the_chain_holds() -> None:
    s = scheduler(gpus=1)
    top = s.try_acquire(req({"tf": {"gpu/0": 0.5}}))
    middle = s.try_acquire(req({"torch": {"gpu/0": 0.25}}))
    assert top is not None and middle is not None
    with pytest.raises(ResourcesUnavailableError, match="calling contexts hold"):
        s.check_possible(req({"torch": {"gpu/0": 0.5}}), held=(top, middle))
    s.check_possible(req({"torch": {"gpu/0": 0.25}}), held=(top, middle))


def test_named_devices_are_placed_before_another_frameworks_whole_count() -> None:
    """Found by review: tf (first by name) took gpu/0 for its num_gpus=1, so torch's named
    gpu/0 share did not fit, and the request was refused as impossible ("Ask for less")."""
    s = scheduler(gpus=2)
    both = req({"torch": {"gpu/0": 0.5}, "tf": {"num_gpus": 1}})
    s.check_possible(both)
    grant = s.try_acquire(both)
    assert grant is not None
    assert grant.shares["torch"] == {"gpu/0": 0.5}
    assert grant.shares["tf"]["gpu/1"] == 1.0


def test_resources_given_to_default_next_to_a_framework_are_refused_not_lost() -> None:
    """Found by review: {'default': {'num_cpus': 2}, 'torch': {}} ran torch on one CPU."""
    with pytest.raises(ContextIncompatibilityError,
                       match=r"give them to one of those, e\.g\. \{'torch': \{'num_cpus': 2\}\}"):
        req({"default": {"num_cpus": 2}, "torch": {}})
    assert list(req({"default": {}, "torch": {"num_cpus": 2}})) == ["torch"]


@pytest.mark.parametrize("bad", [
    {"torch": {"gpu/0": 1.5}}, {"torch": {"gpu/0": 0}}, {"torch": {"tpu/0": 1}},
    {"torch": {"num_gpus": 1.5}}, {"torch": {"num_gpus": -0.5}}, {"torch": {"num_cpus": 0.5}},
    {"torch": {"num_gpus": 0.5, "gpu/0": 0.5}}, {"torch": {"num_cpus": -1}}, {"torch": 3},
    [1, 2],
])
def test_malformed_requirements_are_refused_with_a_reason(bad: object) -> None:
    with pytest.raises(ContextIncompatibilityError):
        normalize_requirement(bad)  # type: ignore[arg-type]


_SPEC = st.dictionaries(
    st.sampled_from(["tf", "torch", "default"]),
    st.dictionaries(
        st.sampled_from(["gpu/0", "gpu/1", "cpu/0", "cpu/3", "num_gpus", "num_cpus"]),
        st.sampled_from([0.25, 0.5, 1.0, 1, 2]), max_size=3),
    max_size=2)


def _fix(spec: dict) -> dict:
    fixed = {fw: {k: (v if k == "num_gpus" and v < 1 else int(v) if k.startswith("num_")
                      else min(float(v), 1.0))
                  for k, v in r.items()} for fw, r in spec.items()}
    for r in fixed.values():  # a fractional num_gpus takes any GPU: it names none
        if isinstance(r.get("num_gpus"), float):
            for k in [k for k in r if k.startswith("gpu/")]:
                del r[k]
    if len(fixed) > 1:  # 'default' next to a framework asks for nothing (or is refused)
        fixed.pop("default", None)
    return fixed


@settings(max_examples=150)
@given(st.lists(st.tuples(_SPEC, st.booleans()), max_size=25))
def test_grants_never_exceed_capacity(ops: list) -> None:
    s = scheduler(gpus=2)
    held = []
    for spec, release_one in ops:
        grant = s.try_acquire(req(_fix(spec)))
        if grant is not None:
            held.append(grant)
        if release_one and held:
            s.release(held.pop(0))
        used: dict[str, float] = {}
        for g in held:
            for name, amount in g.totals().items():
                used[name] = used.get(name, 0) + amount
        assert all(v <= 1 + 1e-9 for v in used.values()), used
        free = s.free()
        assert all(abs(free[n] - (1 - used.get(n, 0))) < 1e-6 for n in free)


def test_threads_racing_for_one_gpu_never_share_it() -> None:
    s = scheduler(gpus=1)
    owners: list[int] = []
    errors: list[str] = []

    def grab(i: int) -> None:
        for _ in range(50):
            g = s.try_acquire(req({"torch": {"gpu/0": 1.0, "cpu/0": 0.01}}))
            if g is None:
                continue
            owners.append(i)
            if len(owners) > 1:
                errors.append(f"{owners} hold gpu/0 together")
            owners.remove(i)
            s.release(g)

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_no_driver_means_zero_gpus_and_importing_touches_no_nvml() -> None:
    assert isinstance(NvmlProvider().resources(), list)  # [] here; never raises
    code = ("import sys, dryml.context; "
            "print('pynvml' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_cuda_visible_devices_restricts_nvml_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    from dryml.context._gpu import _visible

    found = [{"nvml_index": i, "uuid": f"GPU-{i}aaa"} for i in range(4)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-0")
    assert [g["nvml_index"] for g in _visible(found)] == [2, 0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert _visible(found) == []


def test_nvml_is_installed_with_core_and_reports_no_gpu_without_a_driver() -> None:
    import importlib.metadata

    assert importlib.metadata.version("nvidia-ml-py")  # declared by dryml-core, not `pynvml`
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no driver (as on CI): zero GPUs, no error
        assert NvmlProvider().resources() == []
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")


class _StandInNvml(types.ModuleType):
    """The pynvml calls NvmlProvider makes, answering for two GPUs (a driver's answers)."""

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.shutdowns = 0

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None:
        self.shutdowns += 1
    def nvmlDeviceGetCount(self) -> int:
        return 2
    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i
    def nvmlDeviceGetUUID(self, h: int) -> bytes:
        return f"GPU-{h}1234".encode()
    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H200"
    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return types.SimpleNamespace(total=(h + 1) << 30)


def test_nvml_gpus_become_resources_in_visible_order(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = _StandInNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = NvmlProvider().resources()
    assert [(g.kind, g.index, g.info["uuid"], g.info["memory_total"]) for g in gpus] == [
        ("gpu", 0, "GPU-01234", 1 << 30), ("gpu", 1, "GPU-11234", 2 << 30)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    (only,) = NvmlProvider().resources()
    assert (only.index, only.info["nvml_index"], only.info["model"]) == (0, 1, "NVIDIA H200")
    assert nvml.shutdowns == 2  # NVML is shut down after each look


# -- shares are accounted in whole millionths: they always add back up -----------------------

@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_every_device_is_whole_again_once_shares_with_many_decimals_are_released(
        kind: str) -> None:
    """Found by review: grants subtracted raw floats and rounded, releases added amounts rounded
    to 9 digits and fits allowed 1e-9, so after shares like these came and went a device stayed
    short of 1.0 and a whole one was refused forever (``cpu/N`` and ``gpu/N`` alike)."""
    import random

    rng = random.Random(1)
    s = scheduler(gpus=1)
    other = "gpu/0" if kind == "cpu" else "cpu/1"
    for _ in range(200):
        held = []
        for _ in range(12):
            share = rng.choice([rng.random(), 1 / 3, 1 / 7, rng.randint(1, 10**10 - 1) / 10**10])
            grant = s.try_acquire(req({"torch": {f"{kind}/0": max(share, 1e-6),
                                                 other: 0.001}}))
            if grant is not None:
                held.append(grant)
            if held and rng.random() < 0.5:
                s.release(held.pop(rng.randrange(len(held))))
        for grant in held:
            s.release(grant)
        assert s.free()[f"{kind}/0"] == 1.0
    whole = s.try_acquire(req({"torch": {f"{kind}/0": 1.0, other: 0.001}}))
    assert whole is not None and whole.shares["torch"][f"{kind}/0"] == 1.0
    s.release(whole)
    count = s.try_acquire(req({"torch": {"num_gpus": 1, "num_cpus": 8}}))
    assert count is not None


def test_the_shares_reviewers_found_leave_a_whole_gpu_for_num_gpus() -> None:
    s = scheduler(gpus=1)
    grants = [s.try_acquire(req({"torch": {"gpu/0": share, "cpu/0": 0.1}}))
              for share in (0.0018989995, 0.3603387795)]
    for grant in grants:
        assert grant is not None
        s.release(grant)
    assert s.free()["gpu/0"] == 1.0
    s.check_possible(req({"torch": {"num_gpus": 1}}))
    assert s.try_acquire(req({"torch": {"num_gpus": 1}})) is not None


def test_shares_granted_are_the_amounts_counted_and_add_up_to_no_more_than_one() -> None:
    """A worker is told the share it was counted for, in whole millionths: told what was
    asked, three shares of 0.3333334 (counted 0.333333 each) told the workers 1.0000002 of
    one GPU (found by an audit)."""
    s = scheduler(gpus=1)
    thirds = [s.try_acquire(req({"tf": {"gpu/0": 1 / 3}, "torch": {"gpu/0": 1 / 3}})),
              s.try_acquire(req({"torch": {"gpu/0": 0.3333334}}))]
    assert all(g is not None for g in thirds)
    assert thirds[0].shares["tf"]["gpu/0"] == 0.333333  # type: ignore[union-attr]
    assert thirds[1].shares["torch"]["gpu/0"] == 0.333333  # type: ignore[union-attr]
    assert s.free()["gpu/0"] == pytest.approx(1e-6)  # three of 333333 millionths each
    assert s.try_acquire(req({"torch": {"gpu/0": 2e-6}})) is None
    last = s.try_acquire(req({"torch": {"gpu/0": 1e-6}}))
    assert last is not None and s.free()["gpu/0"] == 0.0
    told = [g.shares[f]["gpu/0"] for g in [*thirds, last]  # type: ignore[union-attr]
            for f in g.shares]  # type: ignore[union-attr]
    assert round(sum(told) * 10**6) == 10**6


@pytest.mark.parametrize("spec", [{"gpu/0": 1e-10}, {"num_gpus": 5e-10}, {"cpu/2": 9.9e-7}])
def test_a_share_below_one_millionth_is_refused_saying_what_to_ask(spec: dict) -> None:
    """Found by review: a share below the 1e-9 tolerance was granted on a GPU that another
    worker held whole, and both saw it. The smallest share is now 1e-06 of a device."""
    s = scheduler(gpus=1)
    holder = s.try_acquire(req({"torch": {"num_gpus": 1, "cpu/0": 0.5}}))
    assert holder is not None
    with pytest.raises(ContextIncompatibilityError, match=r"below the smallest share .*1e-06"):
        s.try_acquire(req({"tf": {**spec, "cpu/1": 0.5}}))
    assert s.try_acquire(req({"tf": {"gpu/0": 1e-6, "cpu/1": 0.5}})) is None  # held whole
    assert s.try_acquire(req({"tf": {"cpu/1": 1e-6}})) is not None


# -- NVML faults are warned about; CUDA_VISIBLE_DEVICES is read as CUDA reads it --------------

class _FaultyNvml(_StandInNvml):
    """The stand-in NVML with faults a real driver shows: ``nvmlInit`` failing with
    ``init_error``, GPU ``lost`` that can no longer be queried, ``models`` per GPU."""

    def __init__(self, init_error: int | None = None, lost: int | None = None,
                 models: tuple[str, str] = ("NVIDIA H200", "NVIDIA H200")) -> None:
        super().__init__()
        self.NVMLError, self.gpu_is_lost = _pynvml.NVMLError, _pynvml.NVML_ERROR_GPU_IS_LOST
        self.init_error, self.lost, self.models = init_error, lost, models

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.NVMLError(self.init_error)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        if i == self.lost:
            raise self.NVMLError(self.gpu_is_lost)
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return self.models[h]


def _nvml_gpus(monkeypatch: pytest.MonkeyPatch, nvml: _FaultyNvml,
               cuda: str | None = None) -> list[str]:
    """The uuids NvmlProvider reports, in ordinal order, under ``CUDA_VISIBLE_DEVICES=cuda``."""
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    if cuda is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", cuda)
    return [g.info["uuid"] for g in NvmlProvider().resources()]


def test_a_gpu_nvml_cannot_query_is_left_out_with_a_warning_and_the_others_stay(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: one GPU NVML could not query (fallen off the bus) made every GPU
    disappear, silently. The GPUs are simulated (CI has none): a stand-in pynvml answers."""
    with pytest.warns(DrymlWarning, match=r"cannot query GPU 1 .*GPU is lost.*uses the others"):
        assert _nvml_gpus(monkeypatch, _FaultyNvml(lost=1)) == ["GPU-01234"]
    s = Scheduler([FakeCpuProvider(8), NvmlProvider()])
    with pytest.warns(DrymlWarning):
        s.check_possible(req({"torch": {"gpu/0": 1.0}}))


def test_nvml_failing_to_start_warns_unless_there_is_no_driver(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: a driver/library version mismatch (after a driver upgrade) meant zero
    GPUs without a word. No library or no driver loaded stays silent: a machine without GPUs.
    NVML is simulated (CI has no GPU)."""
    with pytest.warns(DrymlWarning, match=r"NVML could not start .*version mismatch.*driver"):
        assert _nvml_gpus(monkeypatch, _FaultyNvml(_pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for silent in (_pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, _pynvml.NVML_ERROR_DRIVER_NOT_LOADED):
            assert _nvml_gpus(monkeypatch, _FaultyNvml(silent)) == []
        monkeypatch.setitem(sys.modules, "pynvml", None)  # no nvidia-ml-py installed
        assert NvmlProvider().resources() == []


def test_a_cuda_visible_devices_entry_naming_no_gpu_warns_and_ends_the_list(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: a MIG instance (or a mistyped entry) ended the list silently, so a
    machine with GPUs was taken for one without. The GPUs are simulated (CI has none)."""
    mig = "MIG-4f0c5a3e-1b2d-5e6f-8a9b-0c1d2e3f4a5b"
    with pytest.warns(DrymlWarning, match=r"'MIG-4f0c.*names no GPU .*MIG instance"):
        assert _nvml_gpus(monkeypatch, _FaultyNvml(), mig) == []
    with pytest.warns(DrymlWarning, match=r"'7' names no GPU .*listed before it \(1\)"):
        assert _nvml_gpus(monkeypatch, _FaultyNvml(), "1,7,0") == ["GPU-11234"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _nvml_gpus(monkeypatch, _FaultyNvml(), "") == []  # no GPU, as asked
        assert _nvml_gpus(monkeypatch, _FaultyNvml(), "1,GPU-0") == ["GPU-11234", "GPU-01234"]


@pytest.mark.parametrize("cuda", ["1,1", "GPU-1,1"])
def test_a_gpu_named_twice_in_cuda_visible_devices_leaves_none_with_a_warning(
        monkeypatch: pytest.MonkeyPatch, cuda: str) -> None:
    """Found by review: ``1,1`` made one GPU two, and two workers were each granted the same
    GPU whole. CUDA shows no device then; so does dryml, and it says why. The GPUs are
    simulated (CI has none)."""
    with pytest.warns(DrymlWarning, match=r"names GPU GPU-11234 twice.*no GPU at all"):
        assert _nvml_gpus(monkeypatch, _FaultyNvml(), cuda) == []
    with pytest.warns(DrymlWarning), pytest.raises(ResourcesUnavailableError, match="no GPUs"):
        Scheduler([FakeCpuProvider(8), NvmlProvider()]).check_possible(req({"torch": {"num_gpus": 1}}))


def test_numbered_gpus_of_different_models_warn_to_set_the_pci_bus_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA numbers GPUs fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, NVML in PCI bus
    order: with different models ``CUDA_VISIBLE_DEVICES=1`` may name another GPU for CUDA
    than for dryml. The GPUs are simulated (CI has none)."""
    mixed = ("NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3")
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    with pytest.warns(DrymlWarning, match=r"by number.*A100.*H100.*CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        assert _nvml_gpus(monkeypatch, _FaultyNvml(models=mixed), "1") == ["GPU-11234"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _nvml_gpus(monkeypatch, _FaultyNvml(models=mixed), "GPU-1") == ["GPU-11234"]
        assert _nvml_gpus(monkeypatch, _FaultyNvml(models=mixed)) == ["GPU-01234", "GPU-11234"]
        assert _nvml_gpus(monkeypatch, _FaultyNvml(), "1") == ["GPU-11234"]  # one model
        monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        assert _nvml_gpus(monkeypatch, _FaultyNvml(models=mixed), "1") == ["GPU-11234"]
