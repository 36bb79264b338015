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

from zeroserve.artifacts import ArtifactError, local_artifact_path
from zeroserve.artifacts.archives import unpack
from zeroserve.instances import ipc
from zeroserve.instances.spec import InstanceSpec
from zeroserve.runtimes import LoadError, Predictor, load_predictor

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the closed socket still ends the loop
        pass


def set_process_name(name: str) -> None:
    """Name the process for `ps -o comm` / /proc/PID/comm (zs-instance, zs-template, ...):
    forked processes all share the fork server's command line otherwise."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except OSError:
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
        if self._pool is not None:
            # Start the first worker thread now, before READY: the first request should not
            # pay for creating it (it is on the cold-start path).
            self._pool.submit(int).result()

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


class LoadFailed(Exception):
    """The instance could not load its model; the message is for the deployer."""


def load(spec: InstanceSpec) -> tuple[Predictor, dict[str, float]]:
    """Fetch the artifact and load it with its runtime; returns the predictor and timings."""
    t0 = time.perf_counter()
    try:
        path = local_artifact_path(spec.store_uri, spec.artifact_sha256, Path(spec.cache_dir))
        if spec.options.get("archive"):
            path = unpack(path, spec.artifact_sha256, Path(spec.cache_dir) / "unpacked")
        t_fetch = time.perf_counter()
        predictor = load_predictor(spec.runtime, path, spec.options)
        t_load = time.perf_counter()
    except MemoryError:
        raise LoadFailed(
            f"instance exceeded its memory limit of {spec.memory_mb} MB while loading"
        ) from None
    except (LoadError, ArtifactError) as exc:
        raise LoadFailed(str(exc)) from None
    except Exception as exc:  # user code (a Python model's import) can raise anything
        raise LoadFailed("".join(traceback.format_exception_only(exc)).strip()) from None
    return predictor, {"fetch_ms": (t_fetch - t0) * 1e3, "load_ms": (t_load - t_fetch) * 1e3}


def run_instance(
    sock: socket.socket, spec: InstanceSpec, preloaded: Predictor | None = None
) -> int:
    """Load (unless a snapshot handed us a loaded predictor), say READY, serve until told."""
    set_process_name("zs-instance")
    _limit_memory(spec.memory_mb)
    if preloaded is None:
        try:
            predictor, timings = load(spec)
        except LoadFailed as exc:
            ipc.send_blocking(sock, ipc.encode(ipc.Kind.LOAD_ERROR, 0, {"error": str(exc)}))
            return 1
    else:
        predictor, timings = preloaded, {"fetch_ms": 0.0, "load_ms": 0.0}
    server = _Server(sock, predictor, spec.concurrency)
    meta = {"pid": os.getpid(), "signature": predictor.signature.model_dump(), **timings}
    ipc.send_blocking(sock, ipc.encode(ipc.Kind.READY, 0, meta))
    server.serve()
    return 0


def main(argv: list[str]) -> int:
    die_with_parent()
    fd, spec = int(argv[0]), InstanceSpec.from_json(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the gateway; it stops us
    return run_instance(socket.socket(fileno=fd), spec)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Skip interpreter teardown (finalizing numpy, onnxruntime, ...: ~70 ms of CPU that the
    # next starting instance would compete with). Every reply has been sent by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
