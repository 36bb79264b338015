"""Framing of the gateway <-> instance channel (a stream socket; no HTTP, no pickle).

One frame:

    u32 length of the rest | u8 kind | u64 request id | u32 meta length | meta (JSON) | buffers

`meta["tensors"]` lists the tensors whose raw bytes follow, in order, as
{name, datatype, shape, nbytes}. Numeric tensors travel as their C-contiguous bytes and are
read back with `np.frombuffer` (no per-element work); BYTES tensors use the V2 length-prefixed
layout. Nothing in a frame is executable, so a compromised instance cannot make the gateway
run code by what it sends.
"""

from __future__ import annotations

import enum
import socket
import struct
from typing import Any

import numpy as np
import orjson

from zeroserve.tensors import (
    Tensors,
    datatype_of,
    decode_bytes_tensor,
    encode_bytes_tensor,
    numpy_dtype,
)

__all__ = ["Frame", "Kind", "decode_body", "encode", "recv_frame_blocking", "send_blocking"]

_LEN = struct.Struct("<I")
_HEAD = struct.Struct("<BQI")  # kind, request id, meta length
MAX_FRAME_BYTES = 1 << 31


class Kind(enum.IntEnum):
    READY = 1  # instance -> gateway: loaded; meta has the signature and load timings
    # instance -> gateway: could not load; meta["error"] says why, meta["limit"] ("memory")
    # when it went over its limit
    LOAD_ERROR = 2
    INFER = 3  # gateway -> instance: tensors to predict on
    RESULT = 4  # instance -> gateway: output tensors
    # instance -> gateway: predict raised; meta["error"] says what, meta["limit"] ("memory")
    # when it went over its limit (the instance then exits)
    ERROR = 5
    SHUTDOWN = 6  # gateway -> instance: finish in-flight work and exit
    # Fork server control channel (forkserver.py):
    FORK = 7  # gateway -> fork server: start an instance; carries its socket as SCM_RIGHTS
    FORKED = 8  # fork server -> gateway: meta {pid, path}
    FORK_ERROR = 9  # fork server -> gateway: meta {error}
    EXITED = 10  # fork server -> gateway: meta {pid, returncode}
    PREPARE = 11  # gateway -> fork server: make the snapshot template of meta["spec"]
    TEMPLATES = 12  # fork server -> gateway: meta {sizes: {key: bytes}} or {failed: {key: why}}
    DROP = 13  # gateway -> fork server: meta {model}: its templates go (the model was removed)
    # gateway -> spawned instance, first frame: meta {spec}. The spec holds the instance's
    # secrets (env), so it never goes on a command line, where `ps` would show it.
    START = 14


class Frame:
    __slots__ = ("kind", "meta", "request_id", "tensors")

    def __init__(self, kind: Kind, request_id: int, meta: dict[str, Any], tensors: Tensors) -> None:
        self.kind = kind
        self.request_id = request_id
        self.meta = meta
        self.tensors = tensors


def encode(
    kind: Kind, request_id: int, meta: dict[str, Any] | None = None, tensors: Tensors | None = None
) -> list[bytes | memoryview]:
    """The frame as a list of buffers, ready for `sendmsg` / `writelines` without copying."""
    descr: list[dict[str, Any]] = []
    buffers: list[bytes | memoryview] = []
    for name, array in (tensors or {}).items():
        datatype = datatype_of(array)
        if datatype == "BYTES":
            raw: bytes | memoryview = encode_bytes_tensor(array)
        else:
            raw = memoryview(np.ascontiguousarray(array).data).cast("B")
        descr.append(
            {"name": name, "datatype": datatype, "shape": list(array.shape), "nbytes": len(raw)}
        )
        buffers.append(raw)
    body_meta = dict(meta or {})
    body_meta["tensors"] = descr
    meta_bytes = orjson.dumps(body_meta)
    head = _HEAD.pack(int(kind), request_id, len(meta_bytes))
    total = len(head) + len(meta_bytes) + sum(len(b) for b in buffers)
    return [_LEN.pack(total), head, meta_bytes, *buffers]


def decode_body(body: bytes | bytearray) -> Frame:
    """Parse everything after the length prefix."""
    view = memoryview(body)
    kind, request_id, meta_len = _HEAD.unpack_from(view, 0)
    pos = _HEAD.size
    meta = orjson.loads(view[pos : pos + meta_len])
    pos += meta_len
    tensors: Tensors = {}
    for t in meta.pop("tensors", []):
        nbytes = int(t["nbytes"])
        chunk = view[pos : pos + nbytes]
        pos += nbytes
        shape = tuple(t["shape"])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if t["datatype"] == "BYTES":
            tensors[t["name"]] = decode_bytes_tensor(chunk, count).reshape(shape)
        else:
            dtype = numpy_dtype(t["datatype"])
            tensors[t["name"]] = np.frombuffer(chunk, dtype=dtype, count=count).reshape(shape)
    return Frame(Kind(kind), request_id, meta, tensors)


def send_blocking(sock: socket.socket, buffers: list[bytes | memoryview]) -> None:
    data = b"".join(buffers) if len(buffers) > 8 else None
    if data is not None:
        sock.sendall(data)
        return
    remaining = sum(len(b) for b in buffers)
    sent = sock.sendmsg(buffers)
    if sent < remaining:  # a partial sendmsg: finish the rest with sendall
        sock.sendall(b"".join(bytes(b) for b in buffers)[sent:])


def _recv_exact(sock: socket.socket, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            return None
        got += k
    return buf


def recv_frame_blocking(sock: socket.socket) -> Frame | None:
    """The next frame, or None when the peer closed the channel."""
    prefix = _recv_exact(sock, _LEN.size)
    if prefix is None:
        return None
    (length,) = _LEN.unpack(prefix)
    if length > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {length} bytes exceeds the limit")
    body = _recv_exact(sock, length)
    if body is None:
        return None
    return decode_body(body)
