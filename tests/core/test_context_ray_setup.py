"""What the Ray executor asks Ray for and builds its actors from (no Ray needed: no actor runs).

The Ray tests proper (tests/ray) start a cluster; these check the mapping from a requirement to
an actor's Ray resources and context, which needs none.
"""

from __future__ import annotations

import pytest

from dryml.context._ray import ray_resources
from dryml.context._resources import normalize_requirement
from dryml.context._state import ComputeContext
from dryml.errors import ResourcesUnavailableError


def _gpus(reqs: dict) -> tuple[float, dict[str, list[int]]]:
    """Ray's ``num_gpus`` for ``reqs``, and the GPU ordinals each framework's context lists."""
    _, gpus, shares = ray_resources(normalize_requirement(reqs))
    ctx = ComputeContext(shares, {})
    return gpus, {fw: [g["ordinal"] for g in ctx.local_gpus(fw)] for fw in shares}


@pytest.mark.parametrize("reqs", [
    {"torch": {"gpu/0": 0.5, "gpu/1": 0.5}},
    {"tf": {"gpu/0": 0.5}, "torch": {"gpu/1": 0.5}},
    {"tf": {"gpu/0": 0.3}, "torch": {"gpu/1": 0.3}},
])
def test_shares_of_two_gpus_ask_ray_for_two_gpus(reqs: dict) -> None:
    """Found by review: the shares were summed (1.0, 0.6), so Ray gave the actor one GPU while
    its context listed two ordinals."""
    gpus, ordinals = _gpus(reqs)
    assert sorted(o for listed in ordinals.values() for o in listed) == [0, 1]
    assert gpus == 2.0


@pytest.mark.parametrize(("reqs", "gpus", "ordinals"), [
    ({"torch": {"gpu/1": 0.5}}, 0.5, {"torch": [0]}),
    ({"tf": {"gpu/0": 0.5}, "torch": {"gpu/0": 0.5}}, 1.0, {"tf": [0], "torch": [0]}),
    ({"tf": {"num_gpus": 0.5}, "torch": {"num_gpus": 0.25}}, 0.75, {"tf": [0], "torch": [0]}),
    ({"tf": {"num_gpus": 0.7}, "torch": {"num_gpus": 0.7}}, 2.0, {"tf": [0], "torch": [1]}),
    ({"tf": {"num_gpus": 1}, "torch": {"num_gpus": 1}}, 2.0, {"tf": [0], "torch": [1]}),
    ({"tf": {"num_gpus": 1}, "torch": {"gpu/0": 0.5}}, 2.0, {"tf": [1], "torch": [0]}),
    ({"torch": {"num_gpus": 2}}, 2.0, {"torch": [0, 1]}),
    ({"torch": {}}, 0.0, {"torch": []}),
])
def test_one_gpu_is_a_fraction_and_frameworks_place_gpus_as_locally(
        reqs: dict, gpus: float, ordinals: dict[str, list[int]]) -> None:
    """Whole counts never take a GPU another framework of the request named or took, and a
    fractional ``num_gpus`` goes where the request's GPUs have room (as the local scheduler
    places them); only shares of one single GPU make a fractional ``num_gpus`` for Ray."""
    assert _gpus(reqs) == (gpus, ordinals)


def test_more_than_one_whole_gpu_over_the_frameworks_is_refused() -> None:
    with pytest.raises(ResourcesUnavailableError, match=r"more than one whole gpu/0.*1\.4"):
        ray_resources(normalize_requirement({"tf": {"gpu/0": 0.7}, "torch": {"gpu/0": 0.7}}))
