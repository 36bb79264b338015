"""Frames between gateway and instance round-trip every datatype, over a real socket pair."""

from __future__ import annotations

import socket
import threading

import numpy as np

from zeroserve.instances import InstanceSpec, ipc
from zeroserve.instances.local import start_frame


def test_round_trip_over_a_socket_pair() -> None:
    tensors = {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
        "i64": np.array([1, -2, 3], dtype=np.int64),
        "b": np.array([True, False]),
        "f16": np.array([0.5], dtype=np.float16),
        "s": np.array([b"a", "ü".encode(), b""], dtype=object),
        "scalar": np.array(3.5),
        "big": np.random.default_rng(0).random((512, 384)).astype(np.float32),
    }
    a, b = socket.socketpair()
    with a, b:
        # The frame is bigger than the socket buffer: send from another thread.
        sender = threading.Thread(
            target=ipc.send_blocking, args=(a, ipc.encode(ipc.Kind.INFER, 42, {"k": "v"}, tensors))
        )
        sender.start()
        frame = ipc.recv_frame_blocking(b)
        sender.join()
        assert frame is not None
        assert frame.kind == ipc.Kind.INFER
        assert frame.request_id == 42
        assert frame.meta == {"k": "v"}
        assert list(frame.tensors) == list(tensors)
        for name, expected in tensors.items():
            got = frame.tensors[name]
            assert got.shape == expected.shape
            if expected.dtype == object:
                assert got.tolist() == expected.tolist()
            else:
                assert got.dtype == expected.dtype
                np.testing.assert_array_equal(got, expected)
        a.close()
        assert ipc.recv_frame_blocking(b) is None  # a closed peer ends the stream


def test_non_contiguous_arrays_are_sent_in_c_order() -> None:
    x = np.arange(6, dtype=np.int32).reshape(2, 3).T
    frame = ipc.decode_body(
        b"".join(bytes(p) for p in ipc.encode(ipc.Kind.RESULT, 1, None, {"x": x}))[4:]
    )
    np.testing.assert_array_equal(frame.tensors["x"], x)


def test_a_spawned_instance_gets_its_spec_in_its_first_frame() -> None:
    spec = InstanceSpec(
        instance_id="m-v1-1-abcdef", model="m", version=1, runtime="python",
        artifact_sha256="0" * 64, store_uri="file:///s", cache_dir="/s/cache", concurrency=2,
        memory_mb=256, cpu_limit_s=1.5, env={"TOKEN": "secret"}, tmp_dir="/s/tmp/m.x",
    )  # fmt: skip
    frame = ipc.decode_body(start_frame(spec)[4:])
    assert frame.kind == ipc.Kind.START
    assert InstanceSpec(**frame.meta["spec"]) == spec
    assert "secret" not in repr(spec)
    assert spec.redacted()["env"] == {"TOKEN": "<redacted>"}


def test_an_error_frame_says_which_limit_the_instance_went_over() -> None:
    meta = {"error": "instance exceeded its memory limit of 256 MB", "limit": "memory"}
    raw = b"".join(bytes(p) for p in ipc.encode(ipc.Kind.ERROR, 7, meta))
    frame = ipc.decode_body(raw[4:])
    assert (frame.kind, frame.request_id, frame.meta) == (ipc.Kind.ERROR, 7, meta)
