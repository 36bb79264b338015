"""The instance process: load one version, then answer INFER frames until told to stop.

Run as `python -m zeroserve.instances.worker FD SPEC_JSON`, where FD is this end of a
stream socket to the gateway. The instance exits when the gateway closes the socket or dies
(PR_SET_PDEATHSIG), so a `kill -9` of the platform leaves no orphans behind.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from zeroserve.artifacts import local_artifact_path
from zeroserve.instances import ipc
from zeroserve.instances.spec import InstanceSpec
from zeroserve.runtimes import Predictor, load_predictor

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the closed socket still ends the loop
        pass


def _limit_memory(memory_mb: int | None) -> None:
    # RLIMIT_DATA counts the heap and private writable mappings (Linux >= 4.7), which is what
    # a model's weights and activations occupy; RLIMIT_AS would also count the reserved but
    # untouched address space of thread stacks and allocator arenas and fail far too early.
    if memory_mb:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


class _Server:
    def __init__(self, sock: socket.socket, predictor: Predictor, concurrency: int) -> None:
        self._sock = sock
        self._predictor = predictor
        self._send_lock = threading.Lock()
        # onnxruntime and numpy release the GIL while they compute, so threads give real
        # overlap up to the per-instance concurrency the scaling policy allows.
        self._pool = ThreadPoolExecutor(max_workers=concurrency) if concurrency > 1 else None

    def _send(self, buffers: list[bytes | memoryview]) -> None:
        with self._send_lock:
            ipc.send_blocking(self._sock, buffers)

    def _run(self, frame: ipc.Frame) -> None:
        try:
            t0 = time.perf_counter()
            outputs = self._predictor.predict(frame.tensors)
            meta = {"predict_ms": (time.perf_counter() - t0) * 1e3}
            reply = ipc.encode(ipc.Kind.RESULT, frame.request_id, meta, outputs)
        except Exception as exc:  # the model's own error goes back to its caller
            message = f"{type(exc).__name__}: {exc}"
            reply = ipc.encode(ipc.Kind.ERROR, frame.request_id, {"error": message})
        self._send(reply)

    def serve(self) -> None:
        while True:
            frame = ipc.recv_frame_blocking(self._sock)
            if frame is None or frame.kind == ipc.Kind.SHUTDOWN:
                break
            if frame.kind != ipc.Kind.INFER:
                continue
            if self._pool is None:
                self._run(frame)
            else:
                self._pool.submit(self._run, frame)
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def main(argv: list[str]) -> int:
    _die_with_parent()
    fd, spec = int(argv[0]), InstanceSpec.from_json(argv[1])
    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the gateway; it stops us
    _limit_memory(spec.memory_mb)
    t0 = time.perf_counter()
    try:
        path = local_artifact_path(spec.store_uri, spec.artifact_sha256, Path(spec.cache_dir))
        t_fetch = time.perf_counter()
        predictor = load_predictor(spec.runtime, path, spec.options)
        t_load = time.perf_counter()
    except MemoryError:
        error = f"instance exceeded its memory limit of {spec.memory_mb} MB while loading"
        ipc.send_blocking(sock, ipc.encode(ipc.Kind.LOAD_ERROR, 0, {"error": error}))
        return 1
    except Exception as exc:
        error = (
            str(exc)
            if exc.__class__.__name__ in ("LoadError", "ArtifactError")
            else ("".join(traceback.format_exception_only(exc)).strip())
        )
        ipc.send_blocking(sock, ipc.encode(ipc.Kind.LOAD_ERROR, 0, {"error": error}))
        return 1
    meta = {
        "pid": os.getpid(),
        "signature": predictor.signature.model_dump(),
        "fetch_ms": (t_fetch - t0) * 1e3,
        "load_ms": (t_load - t_fetch) * 1e3,
    }
    ipc.send_blocking(sock, ipc.encode(ipc.Kind.READY, 0, meta))
    _Server(sock, predictor, spec.concurrency).serve()
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Skip interpreter teardown (finalizing numpy, onnxruntime, ...: ~70 ms of CPU that the
    # next starting instance would compete with). Every reply has been sent by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
