"""The fast .npy header parser agrees with numpy's, and hands anything unusual to numpy."""

from __future__ import annotations

import io

import numpy as np
import pytest

from dryml.format._container import _simple_npy_header

ARRAYS = [np.zeros(5, "f4"), np.zeros((3, 4), ">i8", order="F"), np.float32(1).reshape(()),
          np.zeros(3, "U7"), np.zeros((0, 2), "?"), np.zeros((2, 3, 4), "c16"),
          np.zeros(2, "S3"), np.zeros(2, "V8"), np.zeros(2, "M8[ns]"), np.zeros(2, [("a", "i4")])]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}-{a.shape}")
@pytest.mark.parametrize("version", [1, 2])
def test_fast_header_matches_numpy(array: np.ndarray, version: int) -> None:
    out = io.BytesIO()
    write = (np.lib.format.write_array_header_1_0 if version == 1
             else np.lib.format.write_array_header_2_0)
    write(out, np.lib.format.header_data_from_array_1_0(array))
    raw = out.getvalue()
    fp = io.BytesIO(raw)
    np.lib.format.read_magic(fp)
    read = (np.lib.format.read_array_header_1_0 if version == 1
            else np.lib.format.read_array_header_2_0)
    expected = read(fp)
    fast = _simple_npy_header(memoryview(raw), 65536)
    if array.dtype.kind == "M" or array.dtype.names:
        assert fast is None  # numpy's parser decides
    else:
        assert fast == (*expected, fp.tell())


@pytest.mark.parametrize("raw", [
    b"\x93NUMPY\x02\x00\x10\x00\x00\x00{'descr': 'O'}  \n",
    b"\x93NUMPY\x03\x00\x00\x00\x00\x00",
    b"\x93NUMPY\x02\x00\xff\xff\xff\x7f{'descr': '<f4', 'fortran_order': False, ",
    b"\x93NUMPY\x01\x00\x40\x00{'descr': '<f4', 'fortran_order': 1, 'shape': (3,), }      \n",
])
def test_anything_else_goes_to_numpy(raw: bytes) -> None:
    assert _simple_npy_header(memoryview(raw), 65536) is None
