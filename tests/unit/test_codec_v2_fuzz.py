"""Property tests of the V2 tensor decoder: any body gives tensors or a TensorError (a 400),
never another exception; valid tensors round-trip through JSON and the binary extension."""

from __future__ import annotations

import contextlib
import json
import math
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroserve.gateway import codec_v2
from zeroserve.tensors import TensorError, numpy_dtype

NUMERIC = ["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "UINT16", "UINT32", "UINT64",
           "FP16", "FP32", "FP64"]  # fmt: skip
shapes = st.lists(st.integers(min_value=0, max_value=4), min_size=0, max_size=3)


def _decode(body: bytes, header: str | None) -> None:
    with contextlib.suppress(TensorError):  # a clear 400: allowed; anything else fails
        codec_v2.decode_request(body, header)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=256),
    st.one_of(st.none(), st.integers(-5, 300).map(str), st.text(max_size=5)),
)
def test_arbitrary_bytes_never_escape_as_another_error(body: bytes, header: str | None) -> None:
    _decode(body, header)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.one_of(st.text(max_size=4), json_values),
    datatype=st.one_of(st.sampled_from([*NUMERIC, "BYTES", "BF16"]), json_values),
    shape=st.one_of(shapes, json_values),
    data=json_values,
    params=st.one_of(
        st.none(), st.dictionaries(st.sampled_from(["binary_data_size"]), json_values)
    ),
)
def test_arbitrary_json_tensors_give_tensors_or_a_400(
    name: object, datatype: object, shape: object, data: object, params: object
) -> None:
    item = {"name": name, "datatype": datatype, "shape": shape, "data": data}
    if params is not None:
        item["parameters"] = params
    _decode(json.dumps({"inputs": [item]}).encode(), None)


@settings(max_examples=200, deadline=None)
@given(datatype=st.sampled_from(NUMERIC), shape=shapes, seed=st.integers(0, 2**32 - 1),
       cut=st.integers(0, 64))  # fmt: skip
def test_binary_tensors_round_trip_or_truncation_is_a_400(
    datatype: str, shape: list[int], seed: int, cut: int
) -> None:
    count = math.prod(shape)
    rng = np.random.default_rng(seed)
    dtype = numpy_dtype(datatype)
    array = rng.integers(0, 2, size=count).astype(dtype).reshape(shape)
    raw = array.tobytes()
    item = {"name": "t", "datatype": datatype, "shape": shape,
            "parameters": {"binary_data_size": len(raw)}}  # fmt: skip
    header = json.dumps({"inputs": [item]}).encode()
    got = codec_v2.decode_request(header + raw, str(len(header))).inputs["t"]
    np.testing.assert_array_equal(got, array)
    if cut and len(raw):
        truncated = header + raw[: max(0, len(raw) - cut)]
        try:
            codec_v2.decode_request(truncated, str(len(header)))
        except TensorError:
            return
        raise AssertionError("a truncated binary tensor was accepted")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=12), max_size=5), st.integers(0, 8))
def test_bytes_tensors_round_trip_and_truncation_is_a_400(items: list[bytes], cut: int) -> None:
    raw = b"".join(struct.pack("<I", len(b)) + b for b in items)
    item = {"name": "s", "datatype": "BYTES", "shape": [len(items)],
            "parameters": {"binary_data_size": len(raw)}}  # fmt: skip
    header = json.dumps({"inputs": [item]}).encode()
    got = codec_v2.decode_request(header + raw, str(len(header))).inputs["s"]
    assert got.tolist() == items
    if cut and raw:
        _decode(header + raw[:-cut], str(len(header)))
