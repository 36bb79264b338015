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
from typing import Any, Protocol

from zeroserve.instances import ipc
from zeroserve.instances.backend import InstanceDied, ModelError, StartError, StartInfo
from zeroserve.instances.spec import InstanceSpec
from zeroserve.spec import Signature
from zeroserve.tensors import Tensors

__all__ = ["LocalBackend", "LocalInstance", "ProcessHandle", "connect"]

_PREFIX = 4

# One BLAS/OpenMP thread per instance: instances are the unit of parallelism, and the fork
# server must stay single-threaded to be forked from (forkserver.py).
SINGLE_THREADED = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


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
        self._channel_open = True
        self._closed = asyncio.Event()
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"instance-{self.id}")

    @property
    def alive(self) -> bool:
        return self._exit_reason is None and self._channel_open

    @property
    def exit_reason(self) -> str | None:
        return self._exit_reason

    async def _read_loop(self) -> None:
        try:
            while (frame := await _read_frame(self._reader)) is not None:
                fut = self._pending.pop(frame.request_id, None)
                if fut is None or fut.done():
                    continue  # its caller gave up (timeout): drop the late answer
                if frame.kind == ipc.Kind.RESULT:
                    fut.set_result(frame.tensors)
                elif frame.kind == ipc.Kind.ERROR:
                    fut.set_exception(ModelError(str(frame.meta.get("error", "model error"))))
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
        self._exit_reason = self._exit_reason or _describe_exit(self._proc.returncode)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(InstanceDied(f"instance {self._exit_reason}"))
        self._pending.clear()
        self._writer.close()
        self._closed.set()

    async def infer(self, inputs: Tensors) -> Tensors:
        if not self.alive:
            raise InstanceDied(f"instance {self._exit_reason or 'closed its channel'}")
        request_id = next(self._ids)
        fut: asyncio.Future[Tensors] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        try:
            self._writer.writelines(ipc.encode(ipc.Kind.INFER, request_id, None, inputs))
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
        if ready is not None and ready.kind == ipc.Kind.LOAD_ERROR:
            raise StartError(str(ready.meta.get("error", "load failed")), retryable=False)
        raise StartError(
            f"instance {_describe_exit(proc.returncode)} while loading", retryable=True
        )
    return LocalInstance(spec, proc, reader, writer, ready, started_at, path)


class LocalBackend:
    """Starts each instance as `python -m zeroserve.instances.worker` (a new interpreter):
    the slow, dependable path, used when the fork server is unavailable."""

    name = "local"

    def __init__(self, python: str = sys.executable) -> None:
        self._python = python
        self._procs: set[asyncio.subprocess.Process] = set()

    async def start(self, spec: InstanceSpec, *, timeout_s: float) -> LocalInstance:
        started_at = time.perf_counter()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                self._python, "-m", "zeroserve.instances.worker",
                str(child.fileno()), spec.to_json(),
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C on the terminal reaches the gateway only
                env={**os.environ, **SINGLE_THREADED},  # as forked instances have it
            )  # fmt: skip
        finally:
            child.close()
        self._procs.add(proc)
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
