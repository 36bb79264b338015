"""Tensors as the platform passes them around: named numpy arrays, V2 datatypes, BYTES.

BYTES tensors are numpy object arrays of `bytes`. On the wire (V2 binary extension and the
instance IPC alike) each element is a 4-byte little-endian length followed by its bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "TensorError",
    "Tensors",
    "datatype_of",
    "decode_bytes_tensor",
    "encode_bytes_tensor",
    "numpy_dtype",
]

Tensors = dict[str, npt.NDArray[Any]]


class TensorError(ValueError):
    """A tensor that does not fit its declared datatype or shape."""


_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_FROM_NUMPY = {v: k for k, v in _TO_NUMPY.items() if k != "BYTES"}
_LEN = struct.Struct("<I")


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    try:
        return _TO_NUMPY[datatype]
    except KeyError:
        raise TensorError(
            f"datatype {datatype!r} is not supported; use one of {', '.join(_TO_NUMPY)}"
        ) from None


def datatype_of(array: npt.NDArray[Any]) -> str:
    """The V2 datatype of a numpy array; strings and bytes are BYTES."""
    dt = array.dtype
    if dt.kind in ("O", "S", "U"):
        return "BYTES"
    try:
        return _FROM_NUMPY[dt.newbyteorder("=") if dt.byteorder == ">" else dt]
    except KeyError:
        raise TensorError(f"numpy dtype {dt} has no V2 datatype") from None


def as_bytes_array(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Normalise str/bytes/object arrays to an object array of bytes."""
    flat = array.reshape(-1)
    out = np.empty(flat.shape[0], dtype=object)
    for i, item in enumerate(flat):
        if isinstance(item, bytes):
            out[i] = item
        elif isinstance(item, str):
            out[i] = item.encode("utf-8")
        else:
            out[i] = str(item).encode("utf-8")
    return out.reshape(array.shape)


def encode_bytes_tensor(array: npt.NDArray[Any]) -> bytes:
    parts: list[bytes] = []
    for item in as_bytes_array(array).reshape(-1):
        parts.append(_LEN.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def decode_bytes_tensor(buf: bytes | memoryview, count: int) -> npt.NDArray[Any]:
    """Parse `count` length-prefixed elements; the buffer must hold exactly those."""
    view = memoryview(buf)
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > len(view):
            raise TensorError(f"BYTES data is truncated: element {i} of {count} has no length")
        (n,) = _LEN.unpack_from(view, pos)
        pos += 4
        if pos + n > len(view):
            raise TensorError(f"BYTES data is truncated: element {i} needs {n} bytes")
        out[i] = bytes(view[pos : pos + n])
        pos += n
    if pos != len(view):
        raise TensorError(f"BYTES data has {len(view) - pos} bytes after its {count} elements")
    return out
