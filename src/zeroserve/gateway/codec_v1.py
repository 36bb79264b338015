"""The TF-Serving / KServe V1 protocol: `{"instances": [...]}` (row format) or
`{"inputs": ...}` (columnar), answered with `{"predictions": [...]}` or `{"outputs": ...}`.

V1 carries no datatypes, so values are converted to the datatype the model declares.
See: https://www.tensorflow.org/tfx/serving/api_rest#request_format_2
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from zeroserve.spec import Signature, TensorSpec
from zeroserve.tensors import TensorError, Tensors, as_bytes_array, numpy_dtype

__all__ = ["decode_request", "encode_response"]


def _to_array(values: Any, spec: TensorSpec | None, name: str) -> np.ndarray:
    try:
        if spec is not None and spec.datatype is not None:
            dtype = numpy_dtype(spec.datatype)
            if spec.datatype == "BYTES":
                return as_bytes_array(np.asarray(values, dtype=object))
            return np.asarray(values, dtype=dtype)
        array = np.asarray(values)
    except (ValueError, TypeError, OverflowError) as exc:
        raise TensorError(f"input {name!r}: values do not form a tensor: {exc}") from None
    if array.dtype.kind in ("U", "S", "O"):
        return as_bytes_array(array.astype(object))
    return array


def _from_rows(rows: Any, specs: dict[str, TensorSpec], names: list[str]) -> Tensors:
    if not isinstance(rows, list) or not rows:
        raise TensorError("'instances' must be a non-empty list")
    if all(isinstance(r, dict) for r in rows):
        keys = set(rows[0])
        for i, row in enumerate(rows):
            if set(row) != keys:
                raise TensorError(f"instances[{i}] has keys {sorted(row)}, expected {sorted(keys)}")
        return {k: _to_array([r[k] for r in rows], specs.get(k), k) for k in rows[0]}
    if len(names) != 1:
        raise TensorError(
            f"the model takes {len(names)} inputs ({', '.join(names)}): give each instance"
            " as an object keyed by input name"
        )
    return {names[0]: _to_array(rows, specs.get(names[0]), names[0])}


def _from_columns(columns: Any, specs: dict[str, TensorSpec], names: list[str]) -> Tensors:
    if isinstance(columns, dict):
        if not columns:
            raise TensorError("'inputs' must not be empty")
        return {k: _to_array(v, specs.get(k), k) for k, v in columns.items()}
    if len(names) != 1:
        raise TensorError(
            f"the model takes {len(names)} inputs ({', '.join(names)}): give 'inputs' as an"
            " object keyed by input name"
        )
    return {names[0]: _to_array(columns, specs.get(names[0]), names[0])}


def decode_request(body: bytes, signature: Signature) -> tuple[Tensors, bool]:
    """Tensors, and whether the request used the row ("instances") format."""
    try:
        doc = orjson.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TensorError(f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict) or not ("instances" in doc or "inputs" in doc):
        raise TensorError("the request body must be a JSON object with 'instances' or 'inputs'")
    specs = {s.name: s for s in signature.inputs}
    names = [s.name for s in signature.inputs] or ["input0"]
    if "instances" in doc:
        return _from_rows(doc["instances"], specs, names), True
    return _from_columns(doc["inputs"], specs, names), False


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [_plain(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def encode_response(outputs: Tensors, rows: bool) -> bytes:
    if not rows:
        if len(outputs) == 1:
            doc: dict[str, Any] = {"outputs": _plain(next(iter(outputs.values())))}
        else:
            doc = {"outputs": {k: _plain(v) for k, v in outputs.items()}}
    elif len(outputs) == 1:
        doc = {"predictions": _plain(next(iter(outputs.values())))}
    else:
        batch = min(len(v) if v.ndim else 1 for v in outputs.values())
        doc = {
            "predictions": [
                {k: _plain(v[i] if v.ndim else v) for k, v in outputs.items()} for i in range(batch)
            ]
        }
    return orjson.dumps(doc)
