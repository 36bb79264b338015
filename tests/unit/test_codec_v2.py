"""V2 JSON and binary tensor decoding/encoding, and validation against a signature."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from zeroserve.gateway import codec_v2
from zeroserve.spec import Signature, TensorSpec
from zeroserve.tensors import TensorError

SIG = Signature(inputs=[TensorSpec(name="X", datatype="FP32", shape=[-1, 4])])


def _binary(header: dict[str, object], *payloads: bytes) -> tuple[bytes, str]:
    raw = json.dumps(header).encode()
    return raw + b"".join(payloads), str(len(raw))


def test_json_flat_and_nested_data_decode_alike() -> None:
    flat = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]}
    nested = {
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]
    }
    a = codec_v2.decode_request(json.dumps(flat).encode(), None).inputs["X"]
    b = codec_v2.decode_request(json.dumps(nested).encode(), None).inputs["X"]
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_binary_inputs_and_bytes() -> None:
    x = np.arange(8, dtype=np.float32)
    words = struct.pack("<I", 2) + b"hi" + struct.pack("<I", 0)
    body, n = _binary(
        {
            "inputs": [
                {"name": "X", "datatype": "FP32", "shape": [2, 4],
                 "parameters": {"binary_data_size": 32}},
                {"name": "s", "datatype": "BYTES", "shape": [2],
                 "parameters": {"binary_data_size": len(words)}},
            ]
        },
        x.tobytes(),
        words,
    )  # fmt: skip
    req = codec_v2.decode_request(body, n)
    np.testing.assert_array_equal(req.inputs["X"], x.reshape(2, 4))
    assert req.inputs["s"].tolist() == [b"hi", b""]


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3]}, "needs 4 values, got 3"),
        ({"datatype": "BF16", "shape": [1], "data": [1]}, "not supported"),
        ({"datatype": "INT8", "shape": [1], "data": [300]}, "does not fit datatype INT8"),
        ({"datatype": "FP32", "shape": [-1], "data": [1]}, "non-negative"),
        ({"datatype": "FP32", "shape": [1]}, "neither 'data' nor binary_data_size"),
        ({"datatype": "BYTES", "shape": [1], "data": [7]}, "not a string"),
    ],
)
def test_bad_json_tensors(tensor: dict[str, object], message: str) -> None:
    body = json.dumps({"inputs": [{"name": "t", **tensor}]}).encode()
    with pytest.raises(TensorError, match=message):
        codec_v2.decode_request(body, None)


def test_binary_payload_must_match_its_sizes() -> None:
    header = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4],
                          "parameters": {"binary_data_size": 12}}]}  # fmt: skip
    body, n = _binary(header, b"\0" * 12)
    with pytest.raises(TensorError, match="needs 16 bytes, got 12"):
        codec_v2.decode_request(body, n)
    body, n = _binary(
        {**header, "inputs": [{**header["inputs"][0], "parameters": {"binary_data_size": 16}}]},
        b"\0" * 20,
    )  # type: ignore[dict-item]
    with pytest.raises(TensorError, match="4 bytes of binary data belong to no input"):
        codec_v2.decode_request(body, n)
    bad_bytes, n = _binary(
        {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1],
                     "parameters": {"binary_data_size": 6}}]},
        struct.pack("<I", 9) + b"ab",
    )  # fmt: skip
    with pytest.raises(TensorError, match="truncated"):
        codec_v2.decode_request(bad_bytes, n)


def test_validate_names_expected_and_got() -> None:
    with pytest.raises(TensorError, match="expected datatype FP32, got FP64"):
        codec_v2.validate({"X": np.zeros((1, 4))}, SIG)
    with pytest.raises(TensorError, match=r"expected shape \[-1, 4\], got \[1, 5\]"):
        codec_v2.validate({"X": np.zeros((1, 5), np.float32)}, SIG)
    with pytest.raises(TensorError, match="unknown input 'Y'"):
        codec_v2.validate({"X": np.zeros((1, 4), np.float32), "Y": np.zeros(1)}, SIG)
    codec_v2.validate({"X": np.zeros((7, 4), np.float32)}, SIG)


def test_response_binary_outputs_follow_the_json_header() -> None:
    req = codec_v2.V2Request(
        inputs={}, id="7", outputs=[codec_v2.RequestedOutput("p", binary=True)]
    )
    p = np.array([[0.25, 0.75]], dtype=np.float32)
    body, n = codec_v2.encode_response("iris", 3, req, {"p": p, "label": np.array([1])})
    assert n is not None
    header = json.loads(body[:n])
    assert header == {
        "model_name": "iris", "model_version": "3", "id": "7",
        "outputs": [{"name": "p", "datatype": "FP32", "shape": [1, 2],
                     "parameters": {"binary_data_size": 8}}],
    }  # fmt: skip
    np.testing.assert_array_equal(np.frombuffer(body[n:], np.float32), p.ravel())
