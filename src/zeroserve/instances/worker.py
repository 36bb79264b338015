"""The instance process: load one version, then answer INFER frames until told to stop.

Run as `python -m zeroserve.instances.worker FD`, where FD is this end of a stream socket to
the gateway, whose first frame (START) is the instance's spec. The instance exits when the
gateway closes the socket or dies (PR_SET_PDEATHSIG), so a `kill -9` of the platform leaves
no orphans behind. Its environment, temp dir and limits: sandbox.py.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

from zeroserve.artifacts import ArtifactError, local_artifact_path
from zeroserve.artifacts.archives import unpack
from zeroserve.instances import ipc
from zeroserve.instances.sandbox import (
    EXIT_OUT_OF_MEMORY,
    enter_instance,
    memory_limit_reason,
    out_of_memory,
    remove_tmp_dir,
)
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


class _Server:
    def __init__(
        self, sock: socket.socket, predictor: Predictor, concurrency: int, memory_mb: int | None
    ) -> None:
        self._sock = sock
        self._predictor = predictor
        self._memory_mb = memory_mb
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
            requests = frame.meta.get("requests")
            if getattr(self._predictor, "takes_requests", False):
                outputs = self._predictor.predict(frame.tensors, requests or [])  # type: ignore[call-arg]
            else:
                outputs = self._predictor.predict(frame.tensors)
            meta = {"predict_ms": (time.perf_counter() - t0) * 1e3}
            reply = ipc.encode(ipc.Kind.RESULT, frame.request_id, meta, outputs)
        except Exception as exc:  # the model's own error goes back to its caller
            if self._memory_mb and out_of_memory(exc):
                self._out_of_memory(frame.request_id, exc)
            message = f"{type(exc).__name__}: {exc}"
            reply = ipc.encode(ipc.Kind.ERROR, frame.request_id, {"error": message})
        self._send(reply)

    def _out_of_memory(self, request_id: int, exc: Exception) -> NoReturn:
        """Past memory_mb: tell this request's caller, then exit at once. A process that ran
        out of memory halfway through may be inconsistent; the gateway replaces it, and its
        other requests fail with the same reason (the exit status says it)."""
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        error = f"instance {memory_limit_reason(self._memory_mb)} ({detail})"
        try:
            self._send(ipc.encode(ipc.Kind.ERROR, request_id, {"error": error, "limit": "memory"}))
        finally:
            os._exit(EXIT_OUT_OF_MEMORY)

    def serve(self) -> None:
        try:
            self._serve()
        except MemoryError:  # e.g. receiving an input too big for the limit
            if self._memory_mb:
                os._exit(EXIT_OUT_OF_MEMORY)
            raise

    def _serve(self) -> None:
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
    """The instance could not load its model; the message is for the deployer. `limit` is
    "memory" when it ran out of its memory limit."""

    def __init__(self, message: str, *, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit

    def meta(self) -> dict[str, str]:
        """The LOAD_ERROR frame's meta."""
        return {"error": str(self), **({"limit": self.limit} if self.limit else {})}


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
    except Exception as exc:
        raise _load_failed(exc, spec.memory_mb) from None
    return predictor, {"fetch_ms": (t_fetch - t0) * 1e3, "load_ms": (t_load - t_fetch) * 1e3}


def _load_failed(exc: Exception, memory_mb: int | None) -> LoadFailed:
    if memory_mb and out_of_memory(exc):
        reason = memory_limit_reason(memory_mb)
        return LoadFailed(f"instance {reason} while loading", limit="memory")
    if isinstance(exc, LoadError | ArtifactError):
        return LoadFailed(str(exc))
    # User code (a Python model's import) can raise anything.
    return LoadFailed("".join(traceback.format_exception_only(exc)).strip())


def run_instance(
    sock: socket.socket, spec: InstanceSpec, preloaded: Predictor | None = None
) -> int:
    """Set up the sandbox (environment, temp dir, limits), load (unless a snapshot handed us
    a loaded predictor), say READY, serve until told; the temp dir goes on the way out."""
    set_process_name("zs-instance")
    enter_instance(spec)
    try:
        return _load_and_serve(sock, spec, preloaded)
    finally:
        remove_tmp_dir(spec.tmp_dir)


def _load_and_serve(sock: socket.socket, spec: InstanceSpec, preloaded: Predictor | None) -> int:
    if preloaded is None:
        try:
            predictor, timings = load(spec)
        except LoadFailed as exc:
            ipc.send_blocking(sock, ipc.encode(ipc.Kind.LOAD_ERROR, 0, exc.meta()))
            return 1
    else:
        predictor, timings = preloaded, {"fetch_ms": 0.0, "load_ms": 0.0}
    server = _Server(sock, predictor, spec.concurrency, spec.memory_mb)
    meta = {"pid": os.getpid(), "signature": predictor.signature.model_dump(), **timings}
    ipc.send_blocking(sock, ipc.encode(ipc.Kind.READY, 0, meta))
    server.serve()
    return 0


def main(argv: list[str]) -> int:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the gateway; it stops us
    sock = socket.socket(fileno=int(argv[0]))
    start = ipc.recv_frame_blocking(sock)  # the spec: not on the command line (secrets)
    if start is None or start.kind != ipc.Kind.START:
        return 1
    return run_instance(sock, InstanceSpec(**start.meta["spec"]))


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Skip interpreter teardown (finalizing numpy, onnxruntime, ...: ~70 ms of CPU that the
    # next starting instance would compete with). Every reply has been sent by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
