"""The local backend: each instance is a worker process on this machine, reached over a
Unix stream socket pair (see ipc.py for the framing)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Protocol

from zeroserve.artifacts import ArtifactError, local_artifact_path
from zeroserve.instances import ipc
from zeroserve.instances.backend import (
    InstanceDied,
    LimitExceeded,
    ModelError,
    StartError,
    StartInfo,
)
from zeroserve.instances.sandbox import (
    TempDirs,
    exceeded_limit,
    launch_env,
    remove_tmp_dir,
)
from zeroserve.instances.spec import InstanceSpec
from zeroserve.spec import Signature
from zeroserve.tensors import Tensors

__all__ = [
    "LocalBackend",
    "LocalInstance",
    "ProcessHandle",
    "connect",
    "fetch_artifact",
    "start_frame",
]

_PREFIX = 4


async def _read_frame(reader: asyncio.StreamReader) -> ipc.Frame | None:
    try:
        prefix = await reader.readexactly(_PREFIX)
        length = int.from_bytes(prefix, "little")
        if length > ipc.MAX_FRAME_BYTES:
            return None
        body = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return ipc.decode_body(body)


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "closed its channel"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


async def _remove_tmp_dir(path: str | None) -> None:
    """Remove an instance's temp dir once it is gone, off the event loop (it may be big)."""
    if path:
        try:
            await asyncio.to_thread(remove_tmp_dir, path)
        except RuntimeError:  # the loop's default executor is shut down: the platform stops
            remove_tmp_dir(path)


def _error(meta: dict[str, Any]) -> Exception:
    """An ERROR frame as an exception: the model's own error, or its going over a limit
    (the instance exits next)."""
    message = str(meta.get("error", "model error"))
    limit = meta.get("limit")
    return LimitExceeded(message, reason=str(limit)) if limit else ModelError(message)


class ProcessHandle(Protocol):
    """The OS process behind an instance: a subprocess we spawned, or one the fork server
    forked (whose exit status the fork server reports)."""

    @property
    def returncode(self) -> int | None: ...

    def kill(self) -> None: ...

    async def wait(self) -> int | None: ...


class LocalInstance:
    def __init__(
        self,
        spec: InstanceSpec,
        proc: ProcessHandle,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ready: ipc.Frame,
        started_at: float,
        path: str,
    ) -> None:
        self.id = spec.instance_id
        self._spec = spec
        self.signature = Signature.model_validate(ready.meta["signature"])
        self.start_info = StartInfo(
            total_ms=(time.perf_counter() - started_at) * 1e3,
            fetch_ms=float(ready.meta.get("fetch_ms", 0.0)),
            load_ms=float(ready.meta.get("load_ms", 0.0)),
            path=path,
        )
        self._proc = proc
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Tensors]] = {}
        self._exit_reason: str | None = None
        self._limit_exceeded: str | None = None
        self._channel_open = True
        self._closed = asyncio.Event()
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"instance-{self.id}")

    @property
    def alive(self) -> bool:
        return self._exit_reason is None and self._channel_open

    @property
    def exit_reason(self) -> str | None:
        return self._exit_reason

    @property
    def limit_exceeded(self) -> str | None:
        return self._limit_exceeded

    async def _read_loop(self) -> None:
        try:
            while (frame := await _read_frame(self._reader)) is not None:
                fut = self._pending.pop(frame.request_id, None)
                if fut is None or fut.done():
                    continue  # its caller gave up (timeout): drop the late answer
                if frame.kind == ipc.Kind.RESULT:
                    fut.set_result(frame.tensors)
                elif frame.kind == ipc.Kind.ERROR:
                    fut.set_exception(_error(frame.meta))
        finally:
            self._channel_open = False  # before any await: no new request goes this way
            await self._on_exit()

    async def _on_exit(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._proc.wait(), timeout=2.0)
        if self._proc.returncode is None:
            self._proc.kill()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._proc.wait(), timeout=5.0)
        limit = exceeded_limit(self._proc.returncode, self._spec)
        if limit is not None:
            self._limit_exceeded, reason = limit
            self._exit_reason = self._exit_reason or reason
        self._exit_reason = self._exit_reason or _describe_exit(self._proc.returncode)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(self._died())
        self._pending.clear()
        self._writer.close()
        await _remove_tmp_dir(self._spec.tmp_dir)  # what a killed instance could not remove
        self._closed.set()

    def _died(self) -> InstanceDied:
        """What a request in flight when the instance went away gets."""
        message = f"instance {self._exit_reason}"
        if self._limit_exceeded is not None:
            return LimitExceeded(message, reason=self._limit_exceeded)
        return InstanceDied(message)

    async def infer(self, inputs: Tensors, requests: list[dict[str, Any]] | None = None) -> Tensors:
        if not self.alive:
            raise InstanceDied(f"instance {self._exit_reason or 'closed its channel'}")
        request_id = next(self._ids)
        fut: asyncio.Future[Tensors] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        try:
            meta = {"requests": requests} if requests else None
            self._writer.writelines(ipc.encode(ipc.Kind.INFER, request_id, meta, inputs))
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            # asyncio raises ConnectionError on a dead peer; uvloop raises RuntimeError
            # ("the handler is closed") once the transport is gone.
            self._pending.pop(request_id, None)
            raise InstanceDied(f"instance channel broke: {exc}") from exc
        try:
            return await fut
        finally:
            self._pending.pop(request_id, None)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def stop(self, grace_s: float = 2.0) -> None:
        if self.alive:
            self._exit_reason = "stopped"
            with contextlib.suppress(ConnectionError, RuntimeError):
                self._writer.writelines(ipc.encode(ipc.Kind.SHUTDOWN, 0))
                await self._writer.drain()
        try:
            await asyncio.wait_for(self._closed.wait(), timeout=grace_s + 2.0)
        except TimeoutError:
            self.kill()
            await self._closed.wait()

    def kill(self) -> None:
        self._proc.kill()


async def connect(
    spec: InstanceSpec,
    proc: ProcessHandle,
    parent: socket.socket,
    *,
    timeout_s: float,
    started_at: float,
    path: str,
) -> LocalInstance:
    """Wait for a just-started process's READY on `parent`; clean up on any failure."""
    reader, writer = await asyncio.open_unix_connection(sock=parent, limit=1 << 20)

    async def abandon() -> None:
        writer.close()
        proc.kill()
        await proc.wait()
        await _remove_tmp_dir(spec.tmp_dir)

    try:
        ready = await asyncio.wait_for(_read_frame(reader), timeout=timeout_s)
    except asyncio.CancelledError:
        # The pool is closing mid-start: leave no process behind (it is reaped elsewhere).
        writer.close()
        proc.kill()
        raise
    except TimeoutError:
        await abandon()
        raise StartError(
            f"instance did not load its model within {timeout_s:g} s", retryable=True
        ) from None
    if ready is None or ready.kind != ipc.Kind.READY:
        await abandon()
        raise _start_error(spec, ready, proc.returncode)
    return LocalInstance(spec, proc, reader, writer, ready, started_at, path)


def _start_error(spec: InstanceSpec, frame: ipc.Frame | None, returncode: int | None) -> StartError:
    """Why an instance did not become ready: its load error, or how it died."""
    if frame is not None and frame.kind == ipc.Kind.LOAD_ERROR:
        limit = frame.meta.get("limit")
        error = str(frame.meta.get("error", "load failed"))
        return StartError(error, retryable=False, reason=str(limit) if limit else None)
    limit = exceeded_limit(returncode, spec)
    if limit is not None:  # the same load would go over the same limit again
        label, reason = limit
        return StartError(f"instance {reason} while loading", retryable=False, reason=label)
    return StartError(f"instance {_describe_exit(returncode)} while loading", retryable=True)


async def fetch_artifact(spec: InstanceSpec) -> None:
    """Bring a remote store's artifact into this machine's cache, here in the gateway:
    instances have none of the platform's environment (sandbox.py), so none of its store
    credentials, and only ever read local files. A file:// store is read in place."""
    if spec.store_uri.startswith("file://"):
        return
    try:
        await asyncio.to_thread(
            local_artifact_path, spec.store_uri, spec.artifact_sha256, Path(spec.cache_dir)
        )
    except ArtifactError as exc:
        raise StartError(str(exc), retryable=False) from None
    except Exception as exc:  # the store's own errors (network, permissions)
        error = "".join(traceback.format_exception_only(exc)).strip()
        raise StartError(f"cannot fetch the artifact: {error}", retryable=False) from None


def start_frame(spec: InstanceSpec) -> bytes:
    """The first frame to a spawned worker: its spec (see ipc.Kind.START)."""
    return b"".join(bytes(b) for b in ipc.encode(ipc.Kind.START, 0, {"spec": spec.as_dict()}))


class LocalBackend:
    """Starts each instance as `python -m zeroserve.instances.worker` (a new interpreter):
    the slow, dependable path, used when the fork server is unavailable."""

    name = "local"

    def __init__(self, python: str = sys.executable, *, temp_dirs: TempDirs | None = None) -> None:
        self._python = python
        self._procs: set[asyncio.subprocess.Process] = set()
        self.temp_dirs = temp_dirs or TempDirs()

    async def start(self, spec: InstanceSpec, *, timeout_s: float) -> LocalInstance:
        started_at = time.perf_counter()
        await fetch_artifact(spec)
        spec = self.temp_dirs.make(spec)
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                self._python, "-m", "zeroserve.instances.worker", str(child.fileno()),
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C on the terminal reaches the gateway only
                env=launch_env(os.environ),  # nothing of the platform's (sandbox.py)
            )  # fmt: skip
        except BaseException:
            parent.close()
            remove_tmp_dir(spec.tmp_dir)
            raise
        finally:
            child.close()
        self._procs.add(proc)
        with contextlib.suppress(OSError):  # it died already: connect() says how
            parent.sendall(start_frame(spec))
        try:
            instance = await connect(
                spec, _Spawned(proc), parent, timeout_s=timeout_s, started_at=started_at,
                path="spawn",
            )  # fmt: skip
        except BaseException:
            self._procs.discard(proc)
            raise
        asyncio.get_running_loop().create_task(self._forget(instance, proc))
        return instance

    async def warm_up(self) -> None:
        pass  # nothing to prepare: every start is a new interpreter

    async def prepare(self, spec: InstanceSpec) -> None:
        pass  # no snapshots without a fork server

    def template_sizes(self) -> dict[str, int]:
        return {}

    async def forget_model(self, model: str) -> None:
        pass

    async def _forget(self, instance: LocalInstance, proc: Any) -> None:
        await instance.wait_closed()
        self._procs.discard(proc)

    async def close(self) -> None:
        for proc in list(self._procs):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in list(self._procs):
            await proc.wait()
        self._procs.clear()
        self.temp_dirs.close()


class _Spawned:
    """An asyncio subprocess as a ProcessHandle."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()

    async def wait(self) -> int | None:
        return await self._proc.wait()
