"""Open Inference Protocol V2 request/response bodies, JSON and binary tensor extension.

See: https://github.com/kserve/open-inference-protocol (inference_rest.md) and Triton's
binary_data extension. A binary request is `JSON header | tensor bytes`, the header's length
in the `Inference-Header-Content-Length` HTTP header; each input whose bytes follow names
their count in `parameters.binary_data_size`, in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from zeroserve.spec import Signature
from zeroserve.tensors import (
    TensorError,
    Tensors,
    as_bytes_array,
    datatype_of,
    decode_bytes_tensor,
    encode_bytes_tensor,
    numpy_dtype,
)

__all__ = ["RequestedOutput", "V2Request", "decode_request", "encode_response", "validate"]

HEADER_LENGTH = "inference-header-content-length"


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class V2Request:
    inputs: Tensors
    id: str | None = None
    outputs: list[RequestedOutput] = field(default_factory=list)
    binary_output: bool = False  # request-level default for outputs not listed


def _parse_json(raw: bytes | memoryview) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TensorError(f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise TensorError("the request body must be a JSON object with 'inputs'")
    return doc


def _shape(item: dict[str, Any], name: str) -> tuple[int, ...]:
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise TensorError(f"input {name!r}: 'shape' must be a list of non-negative integers")
    return tuple(shape)


def _from_json_data(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    try:
        if datatype == "BYTES":
            flat = np.asarray(data, dtype=object).reshape(-1)
            for i, v in enumerate(flat):
                if not isinstance(v, (str, bytes)):
                    raise TensorError(f"input {name!r}: BYTES element {i} is {v!r}, not a string")
            array = as_bytes_array(flat)
        else:
            array = np.asarray(data, dtype=numpy_dtype(datatype)).reshape(-1)
    except TensorError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise TensorError(f"input {name!r}: data does not fit datatype {datatype}: {exc}") from None
    if array.size != count:
        raise TensorError(
            f"input {name!r}: shape {list(shape)} needs {count} values, got {array.size}"
        )
    return array.reshape(shape)


def _from_binary(raw: memoryview, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        try:
            return decode_bytes_tensor(raw, count).reshape(shape)
        except TensorError as exc:
            raise TensorError(f"input {name!r}: {exc}") from None
    dtype = numpy_dtype(datatype)
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise TensorError(
            f"input {name!r}: shape {list(shape)} of {datatype} needs {expected} bytes,"
            f" got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON header and the binary tensor bytes that follow it (if any)."""
    if header_length is None:
        return _parse_json(body), memoryview(b"")
    try:
        n = int(header_length)
    except ValueError:
        raise TensorError(
            f"Inference-Header-Content-Length {header_length!r} is not a number"
        ) from None
    if not 0 <= n <= len(body):
        raise TensorError(
            f"Inference-Header-Content-Length is {n} but the body has {len(body)} bytes"
        )
    return _parse_json(memoryview(body)[:n]), memoryview(body)[n:]


def _binary_size(item: dict[str, Any], name: str) -> int | None:
    params = item.get("parameters") or {}
    if not isinstance(params, dict):
        raise TensorError(f"input {name!r}: 'parameters' must be an object")
    size = params.get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise TensorError(f"input {name!r}: binary_data_size must be a non-negative integer")
    return size


def _decode_input(
    i: int, item: Any, binary: memoryview, offset: int
) -> tuple[str, np.ndarray, int]:
    """One input tensor; returns (name, array, bytes of `binary` it consumed)."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise TensorError(f"inputs[{i}] must be an object with a string 'name'")
    name = item["name"]
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise TensorError(f"input {name!r}: 'datatype' must be a string such as \"FP32\"")
    numpy_dtype(datatype)  # a clear error for unknown datatypes
    shape = _shape(item, name)
    size = _binary_size(item, name)
    if size is not None:
        if offset + size > len(binary):
            raise TensorError(
                f"input {name!r}: binary_data_size {size} runs past the end of the body"
                f" ({len(binary) - offset} bytes left)"
            )
        return name, _from_binary(binary[offset : offset + size], datatype, shape, name), size
    if "data" not in item:
        raise TensorError(f"input {name!r} has neither 'data' nor binary_data_size")
    return name, _from_json_data(item["data"], datatype, shape, name), 0


def _requested_outputs(doc: dict[str, Any], default_binary: bool) -> list[RequestedOutput]:
    outputs = doc.get("outputs")
    if outputs is None:
        return []
    if not isinstance(outputs, list):
        raise TensorError("'outputs' must be a list")
    requested = []
    for out in outputs:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise TensorError("each requested output must be an object with a string 'name'")
        params = out.get("parameters")
        binary = params.get("binary_data") if isinstance(params, dict) else None
        requested.append(
            RequestedOutput(out["name"], default_binary if binary is None else bool(binary))
        )
    return requested


def decode_request(body: bytes, header_length: str | None) -> V2Request:
    doc, binary = _split_body(body, header_length)
    items = doc.get("inputs")
    if not isinstance(items, list) or not items:
        raise TensorError("'inputs' must be a non-empty list of tensors")
    inputs: Tensors = {}
    offset = 0
    for i, item in enumerate(items):
        name, array, used = _decode_input(i, item, binary, offset)
        if name in inputs:
            raise TensorError(f"input {name!r} is given twice")
        inputs[name] = array
        offset += used
    if offset != len(binary):
        raise TensorError(f"{len(binary) - offset} bytes of binary data belong to no input")
    params = doc.get("parameters")
    binary_output = isinstance(params, dict) and bool(params.get("binary_data_output", False))
    rid = doc.get("id")
    return V2Request(
        inputs=inputs,
        id=None if rid is None else str(rid),
        outputs=_requested_outputs(doc, binary_output),
        binary_output=binary_output,
    )


def validate(inputs: Tensors, signature: Signature) -> None:
    """Inputs against what the model takes: names, datatypes, shapes; expected vs got."""
    if not signature.inputs_known:
        return
    expected = {s.name: s for s in signature.inputs}
    described = ", ".join(
        f"{s.name} ({s.datatype or 'any'} {s.shape if s.shape is not None else 'any shape'})"
        for s in signature.inputs
    )
    missing = [n for n in expected if n not in inputs]
    if missing:
        raise TensorError(f"missing input {missing[0]!r}; the model expects: {described}")
    for name, array in inputs.items():
        spec = expected.get(name)
        if spec is None:
            raise TensorError(f"unknown input {name!r}; the model expects: {described}")
        got = datatype_of(array)
        if spec.datatype is not None and got != spec.datatype:
            raise TensorError(f"input {name!r}: expected datatype {spec.datatype}, got {got}")
        if spec.shape is not None:
            shape = list(array.shape)
            ok = len(shape) == len(spec.shape) and all(
                e == -1 or e == g for e, g in zip(spec.shape, shape, strict=True)
            )
            if not ok:
                raise TensorError(f"input {name!r}: expected shape {spec.shape}, got {shape}")


def check_requested_outputs(requested: list[RequestedOutput], signature: Signature) -> None:
    if not requested or not signature.outputs:
        return
    known = [o.name for o in signature.outputs]
    for out in requested:
        if out.name not in known:
            raise TensorError(f"unknown output {out.name!r}; the model returns: {', '.join(known)}")


def _json_data(array: np.ndarray, datatype: str) -> list[Any]:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [b.decode("utf-8", errors="replace") for b in as_bytes_array(flat)]
    values: list[Any] = flat.tolist()
    return values


def encode_response(
    model: str, version: int, req: V2Request, outputs: Tensors
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when binary outputs follow it."""
    if req.outputs:
        missing = [o.name for o in req.outputs if o.name not in outputs]
        if missing:
            raise TensorError(
                f"unknown output {missing[0]!r}; the model returns: {', '.join(outputs)}"
            )
        selected = [(o.name, o.binary) for o in req.outputs]
    else:
        selected = [(name, req.binary_output) for name in outputs]
    described: list[dict[str, Any]] = []
    buffers: list[bytes] = []
    for name, binary in selected:
        array = outputs[name]
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            raw = (
                encode_bytes_tensor(array)
                if datatype == "BYTES"
                else np.ascontiguousarray(array).tobytes()
            )
            entry["parameters"] = {"binary_data_size": len(raw)}
            buffers.append(raw)
        else:
            entry["data"] = _json_data(array, datatype)
        described.append(entry)
    doc: dict[str, Any] = {"model_name": model, "model_version": str(version)}
    if req.id is not None:
        doc["id"] = req.id
    doc["outputs"] = described
    header = orjson.dumps(doc)
    if not buffers:
        return header, None
    return header + b"".join(buffers), len(header)
