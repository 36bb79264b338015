"""The gateway side of the fork server: a backend whose instances are forked, not spawned.

One fork server process per backend (forkserver.py) is started with the platform and
restarted if it dies. `start()` hands it the instance's end of a fresh socket pair; the
instance then talks to the gateway directly, exactly like a spawned one (local.LocalInstance).
If the fork server cannot be started at all, instances are spawned (local.LocalBackend).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

from zeroserve.instances import ipc
from zeroserve.instances.backend import StartError
from zeroserve.instances.local import LocalBackend, LocalInstance, connect, fetch_artifact
from zeroserve.instances.sandbox import launch_env, remove_tmp_dir, tmp_root
from zeroserve.instances.spec import InstanceSpec

__all__ = ["ForkServerBackend"]

log = logging.getLogger("zeroserve.forkserver")


class _Forked:
    """A process the fork server forked; its exit status arrives as an EXITED message."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._exited: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    def exited(self, code: int | None) -> None:
        if not self._exited.done():
            self._exited.set_result(code)

    def kill(self) -> None:
        if not self._exited.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    async def wait(self) -> int | None:
        return await asyncio.shield(self._exited)


class _ForkServer:
    """One fork server process and its control channel."""

    def __init__(self, proc: asyncio.subprocess.Process, sock: socket.socket) -> None:
        self.proc = proc
        self._sock = sock
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[ipc.Frame]] = {}
        self._children: dict[int, _Forked] = {}
        self.template_sizes: dict[str, int] = {}
        self.closed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def start(cls, budget_bytes: int, timeout_s: float = 60.0) -> _ForkServer:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "zeroserve.instances.forkserver",
                str(theirs.fileno()), str(budget_bytes),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # Thread pinning before it imports numpy, and nothing of the platform's
                # environment: what it forks inherits this (sandbox.py).
                env=launch_env(os.environ),
            )  # fmt: skip
        finally:
            theirs.close()
        ours.setblocking(False)
        try:
            frame = await asyncio.wait_for(_recv(ours), timeout=timeout_s)
        except (TimeoutError, OSError):
            frame = None
        if frame is None or frame.kind != ipc.Kind.READY:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            ours.close()
            raise StartError("the fork server did not start", retryable=True)
        log.info("fork server %s ready (%s thread)", frame.meta["pid"], frame.meta["threads"])
        return cls(proc, ours)

    async def _read_loop(self) -> None:
        try:
            while (frame := await _recv(self._sock)) is not None:
                self._dispatch(frame)
        except OSError:
            pass
        finally:
            self._sock.close()
            # Its instances die with it (their parent-death signal): say so to everyone.
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(StartError("the fork server died", retryable=True))
            for child in self._children.values():
                child.exited(None)
            self.closed.set()
            await self.proc.wait()

    def _dispatch(self, frame: ipc.Frame) -> None:
        if frame.kind == ipc.Kind.EXITED:
            child = self._children.pop(int(frame.meta["pid"]), None)
            if child is not None:
                child.exited(int(frame.meta["returncode"]))
        elif frame.kind == ipc.Kind.TEMPLATES:
            if "sizes" in frame.meta:
                self.template_sizes = dict(frame.meta["sizes"])
            for key, why in frame.meta.get("failed", {}).items():
                log.warning("no snapshot for %s (fork path instead): %s", key, why)
        else:
            fut = self._waiting.pop(frame.request_id, None)
            if fut is not None and not fut.done():
                fut.set_result(frame)

    def _send(self, frame: list[bytes | memoryview], fd: int | None = None) -> None:
        data = b"".join(bytes(b) for b in frame)
        ancillary = [] if fd is None else [
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))
        ]  # fmt: skip
        # Control frames are small: a Unix socket takes them whole, or the server is stuck.
        sent = self._sock.sendmsg([data], ancillary)
        if sent != len(data):
            raise StartError("the fork server's control channel is full", retryable=True)

    async def fork(self, spec: InstanceSpec, fd: int, *, snapshot: bool) -> tuple[_Forked, str]:
        if self.closed.is_set():
            raise StartError("the fork server died", retryable=True)
        request_id = next(self._ids)
        fut: asyncio.Future[ipc.Frame] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = fut
        meta = {"spec": spec.as_dict(), "snapshot": snapshot}
        self._send(ipc.encode(ipc.Kind.FORK, request_id, meta), fd)
        frame = await fut
        if frame.kind != ipc.Kind.FORKED:
            raise StartError(str(frame.meta.get("error", "fork failed")), retryable=True)
        child = _Forked(int(frame.meta["pid"]))
        self._children[child.pid] = child
        return child, str(frame.meta.get("path", "fork"))

    def prepare(self, spec: InstanceSpec) -> None:
        if not self.closed.is_set():
            self._send(ipc.encode(ipc.Kind.PREPARE, 0, {"spec": spec.as_dict()}))

    def drop(self, model: str) -> None:
        if not self.closed.is_set():
            self._send(ipc.encode(ipc.Kind.DROP, 0, {"model": model}))

    async def close(self) -> None:
        for child in list(self._children.values()):
            child.kill()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.closed.wait()
        await self.proc.wait()  # reaped before the loop may close (else asyncio warns)


async def _recv(sock: socket.socket) -> ipc.Frame | None:
    loop = asyncio.get_running_loop()
    head = await _recv_exact(loop, sock, 4)
    if head is None:
        return None
    body = await _recv_exact(loop, sock, int.from_bytes(head, "little"))
    return None if body is None else ipc.decode_body(body)


async def _recv_exact(loop: Any, sock: socket.socket, n: int) -> bytearray | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class ForkServerBackend:
    """Instances forked from the fork server (or from a version's snapshot template)."""

    name = "local"

    def __init__(self, *, snapshot_budget_bytes: int) -> None:
        self._budget = snapshot_budget_bytes
        self._server: _ForkServer | None = None
        self._lock = asyncio.Lock()
        self._spawn = LocalBackend()
        self._temp = self._spawn.temp_dirs  # one sweep per root, whichever path starts
        self._disabled = False

    async def _ensure(self) -> _ForkServer | None:
        async with self._lock:
            if self._server is not None and not self._server.closed.is_set():
                return self._server
            if self._disabled:
                return None
            try:
                self._server = await _ForkServer.start(self._budget)
            except StartError:
                log.warning("fork server unavailable: instances are spawned (slower starts)")
                self._disabled = True
                return None
            return self._server

    async def warm_up(self) -> None:
        """Start the fork server now, so the first cold start does not pay for it."""
        await self._ensure()

    def template_sizes(self) -> dict[str, int]:
        return dict(self._server.template_sizes) if self._server else {}

    async def prepare(self, spec: InstanceSpec) -> None:
        server = await self._ensure()
        if server is None:
            return
        try:
            await fetch_artifact(spec)
        except StartError as exc:
            log.warning("no snapshot for %s v%s: %s", spec.model, spec.version, exc)
            return
        self._temp.sweep_once(tmp_root(spec.cache_dir))  # before the template makes its dir
        server.prepare(replace(spec, env={}))  # a template holds no secrets (sandbox.py)

    async def forget_model(self, model: str) -> None:
        if self._server is not None:
            self._server.drop(model)

    async def start(self, spec: InstanceSpec, *, timeout_s: float) -> LocalInstance:
        server = await self._ensure()
        if server is None:
            return await self._spawn.start(spec, timeout_s=timeout_s)
        started_at = time.perf_counter()
        await fetch_artifact(spec)
        spec = self._temp.make(spec)
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc, path = await server.fork(spec, child.fileno(), snapshot=spec.snapshot)
        except BaseException:
            parent.close()
            remove_tmp_dir(spec.tmp_dir)
            raise
        finally:
            child.close()
        return await connect(
            spec, proc, parent, timeout_s=timeout_s, started_at=started_at, path=path
        )

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
        await self._spawn.close()  # and the temp dirs' roots are swept
