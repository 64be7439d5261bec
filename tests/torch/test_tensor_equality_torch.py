"""dryml-torch: definitions with tensor arguments are equal exactly when their values are, as
numpy arrays compare in dryml-core (NaN equals NaN, -0.0 equals 0.0, inf only inf), for every
dtype a file can hold."""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

import numpy as np
import pytest

from dryml import Object, ObjectDef, save_object
from dryml.errors import SerializationError

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("torch")
import torch  # noqa: E402

INF = float("inf")
NAN = float("nan")
# dtypes numpy has no dtype for; float4_e2m1fn_x2 packs two values a byte (tested apart)
WIDENED = [name for name in ("bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
                             "float8_e5m2fnuz", "float8_e8m0fnu", "complex32")
           if hasattr(torch, name)]


class Holder(Object):
    """Holds one argument."""

    def __init__(self, value: Any = None) -> None:
        self.value = value


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(ObjectDef(Holder, a) == ObjectDef(Holder, b))


def as_dtype(values: list[Any], name: str) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex32 is "experimental"
        return torch.tensor(values).to(getattr(torch, name))


@pytest.mark.parametrize("name", ["float32", "float64", "float16", "bfloat16", "float8_e5m2"])
def test_infinity_and_the_largest_finite_value_differ(name: str) -> None:
    dtype = getattr(torch, name)
    big = torch.finfo(dtype).max
    assert not same(as_dtype([INF], name), torch.tensor([big], dtype=dtype))
    assert not same(as_dtype([-INF], name), torch.tensor([-big], dtype=dtype))
    assert same(as_dtype([INF, -INF], name), as_dtype([INF, -INF], name))


def test_two_objects_of_one_dry_id_holding_inf_and_the_largest_float_are_refused() -> None:
    # immutable objects that share a dry_id are stored once: these are not the same object
    class Bound(Object):
        def __init__(self, bound: Any) -> None:
            self.bound = bound

    a = Bound(torch.tensor([INF]), dry_id="bound")
    b = Bound(torch.tensor([torch.finfo(torch.float32).max]), dry_id="bound")
    with pytest.raises(SerializationError, match="dry_id 'bound'"):
        save_object(Holder([a, b]), io.BytesIO())


@pytest.mark.parametrize(("left", "right"), [
    ([NAN, 1.0], [NAN, 1.0]), ([NAN, 1.0], [1.0, NAN]), ([NAN], [0.0]), ([-0.0], [0.0]),
    ([INF], [INF]), ([INF], [-INF]), ([1.0, 2.0], [1.0, 2.5]),
])
def test_float_tensors_compare_as_numpy_arrays_do(left: list[float], right: list[float]) -> None:
    expected = ObjectDef(Holder, np.array(left, np.float32)) == ObjectDef(
        Holder, np.array(right, np.float32))
    assert same(torch.tensor(left), torch.tensor(right)) == expected
    complex_left = torch.tensor(left, dtype=torch.complex64) * (1 + 1j)
    complex_right = torch.tensor(right, dtype=torch.complex64) * (1 + 1j)
    assert same(complex_left, complex_right) == expected


@pytest.mark.parametrize("name", WIDENED)
def test_dtypes_numpy_lacks_compare_by_value(name: str) -> None:
    assert same(as_dtype([1.0, 2.0], name), as_dtype([1.0, 2.0], name))
    assert not same(as_dtype([1.0, 2.0], name), as_dtype([1.0, 4.0], name))
    nan = as_dtype([NAN, 2.0], name)
    assert same(nan, nan.clone()) and not same(nan, as_dtype([1.0, 2.0], name))


def test_packed_float4_compares_each_value() -> None:
    dtype = getattr(torch, "float4_e2m1fn_x2", None)
    if dtype is None:
        pytest.skip("this torch has no float4_e2m1fn_x2")

    def packed(*codes: int) -> torch.Tensor:
        return torch.tensor(codes, dtype=torch.uint8).view(dtype)

    assert same(packed(0x12, 0x80), packed(0x12, 0x08))  # -0 (code 8) in either half is 0
    assert not same(packed(0x12, 0x80), packed(0x13, 0x80))
    assert not same(packed(0x21), packed(0x12))
