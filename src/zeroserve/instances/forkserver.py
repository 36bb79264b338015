"""The fork server: a process that imported numpy, pydantic and the runtimes once, and forks
instances on request, so a cold start is a fork plus a model load instead of an interpreter
start plus ~400 ms of imports.

Run as `python -m zeroserve.instances.forkserver FD SNAPSHOT_BUDGET_BYTES`; FD is its end of a
control socket to the gateway. Messages are `ipc` frames; a FORK frame carries the instance's
end of its own socket pair as SCM_RIGHTS ancillary data, so the instance talks to the gateway
directly and the fork server is never on the request path.

Fork safety. `fork()` copies only the calling thread: a lock held by any other thread at that
moment stays locked forever in the child. So this process starts no threads, ever: BLAS and
OpenMP pools are pinned to one thread by the environment the gateway gives it (set before
numpy is imported), and the loop is a plain `select` with SIGCHLD delivered through a wakeup
pipe. onnxruntime is *not* imported
here, because importing it starts a thread; each instance imports its runtime after the fork
(~35 ms for onnxruntime). Before each fork the server checks that it still has one thread and
refuses to fork otherwise.

Snapshots. For a version deployed with `snapshot: true` the fork server keeps a *template*: a
child that loaded the model and ran one warm-up prediction, then runs this same loop and forks
instances from itself (copy-on-write: the loaded weights are shared, not copied). A template is
only kept when loading and predicting started no thread beyond those its framework starts at
import (onnxruntime with one intra-op and one inter-op thread runs on the caller's thread; see
_run_template for why its import-time thread is tolerated); otherwise that version falls back
to the plain fork path. Templates are evicted least-recently-used when
their memory (PSS) exceeds the budget; an evicted template stops forking and exits once its
last instance has.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zeroserve.instances import ipc
from zeroserve.instances.sandbox import enter_template, remove_tmp_dir
from zeroserve.instances.snapshots import Template, templates_to_evict
from zeroserve.instances.spec import InstanceSpec
from zeroserve.instances.worker import (
    LoadFailed,
    die_with_parent,
    load,
    run_instance,
    set_process_name,
)
from zeroserve.runtimes import Predictor

__all__ = ["main"]


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages split between the processes that share them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def recv_with_fds(sock: socket.socket) -> tuple[ipc.Frame | None, list[int]]:
    """One frame, and the file descriptors that rode on its first bytes."""
    fds: list[int] = []
    head = b""
    while len(head) < 4:
        data, got_fds, _, _ = socket.recv_fds(sock, 4 - len(head), 4)
        if not data:
            return None, fds
        head += data
        fds.extend(got_fds)
    length = int.from_bytes(head, "little")
    body = bytearray()
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            return None, fds
        body += chunk
    return ipc.decode_body(body), fds


def send_with_fd(sock: socket.socket, buffers: list[bytes | memoryview], fd: int | None) -> None:
    data = b"".join(bytes(b) for b in buffers)
    if fd is None:
        sock.sendall(data)
        return
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
    sent = sock.sendmsg([data], rights)
    if sent < len(data):
        sock.sendall(data[sent:])


@dataclass
class _Child:
    template: str | None  # the template key it serves, when it is one


class ForkLoop:
    """Serves FORK requests from `up`; used by the fork server and by each template."""

    def __init__(
        self,
        up: socket.socket,
        *,
        predictor: Predictor | None = None,
        budget_bytes: int = 0,
        allowed_threads: int = 1,
        root: bool = False,
    ) -> None:
        self._up = up
        self._root = root  # the fork server itself: it alone keeps templates
        self._ort: Template | None = None  # the onnxruntime fork server, once it is ready
        self._allowed_threads = allowed_threads
        self._predictor = predictor  # set in a template: children start already loaded
        self._budget = budget_bytes
        self._children: dict[int, _Child] = {}
        self._templates: dict[str, Template] = {}  # key -> live, forking template
        self._draining: dict[int, socket.socket] = {}  # evicted templates, by pid
        self._draining_self = False
        # Templates that alone exceed the budget: made once, evicted, not made again (each
        # start of theirs takes the fork path instead of loading a template to throw away).
        self._oversized: set[str] = set()
        self._refused: dict[str, str] = {}  # key -> why it cannot be a template
        self._pending: dict[socket.socket, tuple[str, int]] = {}  # loading templates
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        if self._root:
            self._make_ort_server()
        while True:
            if self._draining_self and not self._children:
                return  # an evicted template whose last instance is gone
            socks: list[Any] = [self._up, self._wake_r, *self._peers()]
            try:
                readable, _, _ = select.select(socks, [], [])
            except InterruptedError:
                continue
            if self._wake_r in readable:
                self._reap()
            if self._up in readable and not self._serve_up():
                return  # the gateway (or our fork server) is gone: so are we
            for sock in readable:
                if sock in self._pending:
                    self._template_reported(sock)
                elif sock is not self._up and sock != self._wake_r:
                    self._relay(sock)

    def _peers(self) -> list[socket.socket]:
        """Channels to the processes this one forks through: templates (live, draining,
        loading) and the onnxruntime fork server."""
        peers = [t.sock for t in self._templates.values()]
        peers += [*self._draining.values(), *self._pending]
        if self._ort is not None:
            peers.append(self._ort.sock)
        return peers

    def _serve_up(self) -> bool:
        frame, fds = recv_with_fds(self._up)
        if frame is None:
            return False
        if frame.kind == ipc.Kind.FORK:
            fd = fds[0] if fds else -1
            self._fork(frame, fd)
        elif frame.kind == ipc.Kind.PREPARE:
            self._make_template(InstanceSpec(**frame.meta["spec"]))
        elif frame.kind == ipc.Kind.DROP:
            self._drop_model(str(frame.meta["model"]))
        elif frame.kind == ipc.Kind.SHUTDOWN:
            self._draining_self = True  # a template being evicted: no more forks
        for extra in fds[1:]:
            os.close(extra)
        return True

    def _send_up(self, kind: ipc.Kind, request_id: int, meta: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            ipc.send_blocking(self._up, ipc.encode(kind, request_id, meta))

    # -- forking -------------------------------------------------------------------------------

    def _fork(self, frame: ipc.Frame, fd: int) -> None:
        spec = InstanceSpec(**frame.meta["spec"])
        if fd < 0:
            self._send_up(ipc.Kind.FORK_ERROR, frame.request_id, {"error": "no socket passed"})
            return
        if frame.meta.get("snapshot") and self._root:
            template = self._templates.get(_key(spec))
            if template is not None:
                template.last_used = time.monotonic()
                send_with_fd(
                    template.sock, ipc.encode(ipc.Kind.FORK, frame.request_id, frame.meta), fd
                )
                os.close(fd)
                return
        if self._ort is not None and spec.runtime in _ORT_RUNTIMES:
            send_with_fd(
                self._ort.sock, ipc.encode(ipc.Kind.FORK, frame.request_id, frame.meta), fd
            )
            os.close(fd)
        else:
            path = "snapshot" if self._predictor is not None else "fork"
            self._fork_child(frame.request_id, spec, fd, path)
        if frame.meta.get("snapshot") and self._root:
            # Evicted or never made: this start took the fork path; the next one need not.
            self._make_template(spec)

    def _fork_child(self, request_id: int, spec: InstanceSpec, fd: int, path: str) -> None:
        threads = thread_count()
        if threads != self._allowed_threads:
            os.close(fd)
            error = f"the fork server has {threads} threads; forking it would not be safe"
            self._send_up(ipc.Kind.FORK_ERROR, request_id, {"error": error})
            return
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self._become_child()
                code = run_instance(socket.socket(fileno=fd), spec, self._predictor)
            finally:
                os._exit(code)
        os.close(fd)
        self._children[pid] = _Child(template=None)
        self._send_up(ipc.Kind.FORKED, request_id, {"pid": pid, "path": path})

    def _become_child(self) -> None:
        """In a freshly forked child: drop the server's sockets and signal handling."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for sock in [self._up, *self._peers()]:
            with contextlib.suppress(OSError):
                sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        die_with_parent()

    # -- templates (snapshots) -----------------------------------------------------------------

    def _make_template(self, spec: InstanceSpec) -> None:
        """Fork a template that loads `spec` in the background: starts go on meanwhile (on
        the fork path), and it serves snapshot forks once it reports READY."""
        key = _key(spec)
        if not self._root or self._budget <= 0:
            return
        if key in self._templates or key in self._refused or key in self._oversized:
            return
        if any(k == key for k, _ in self._pending.values()) or thread_count() != 1:
            return
        self._fork_helper(key, lambda sock: _run_template(sock, spec))

    def _make_ort_server(self) -> None:
        """Fork the onnxruntime fork server in the background (see _run_ort_server)."""
        self._fork_helper(_ORT_KEY, _run_ort_server)

    def _fork_helper(self, key: str, body: Callable[[socket.socket], int]) -> None:
        """Fork a long-lived helper (a template, the onnxruntime server) that runs `body` on
        its end of a new channel; it counts as pending until it reports READY."""
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ours.close()
                self._become_child()
                code = body(theirs)
            finally:
                os._exit(code)
        theirs.close()
        self._children[pid] = _Child(template=key)
        self._pending[ours] = (key, pid)

    def _template_reported(self, sock: socket.socket) -> None:
        key, pid = self._pending.pop(sock)
        try:
            ready = ipc.recv_frame_blocking(sock)
        except OSError:
            ready = None
        if key == _ORT_KEY:
            if ready is not None and ready.kind == ipc.Kind.READY:
                self._ort = Template(key=key, pid=pid, sock=sock, last_used=time.monotonic())
            else:  # instances import onnxruntime themselves: slower, still correct
                sock.close()
            return
        if ready is None or ready.kind != ipc.Kind.READY:
            # Remembered: a model that cannot be a template is not loaded again for nothing.
            error = str(ready.meta.get("error", "template died")) if ready else "template died"
            self._refused[key] = error
            self._send_up(ipc.Kind.TEMPLATES, 0, {"failed": {key: error}})
            sock.close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return
        self._templates[key] = Template(key=key, pid=pid, sock=sock, last_used=time.monotonic())
        self._enforce_budget()

    def _drop_model(self, model: str) -> None:
        """The model was removed: its templates go (they drain like evicted ones)."""
        prefix = f"{model}:"
        for key in [k for k in self._templates if k.startswith(prefix)]:
            self._retire(self._templates.pop(key))
        for sock, (key, pid) in list(self._pending.items()):
            if key.startswith(prefix):
                del self._pending[sock]
                sock.close()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for key in [k for k in self._refused if k.startswith(prefix)]:
            del self._refused[key]
        self._oversized = {k for k in self._oversized if not k.startswith(prefix)}
        self._send_up(ipc.Kind.TEMPLATES, 0, {"sizes": self._sizes()})

    def _retire(self, template: Template) -> None:
        # It stops forking now and exits after its last instance (whose death signal is tied
        # to it: killing it would take its instances down).
        with contextlib.suppress(OSError):
            ipc.send_blocking(template.sock, ipc.encode(ipc.Kind.SHUTDOWN, 0))
        self._draining[template.pid] = template.sock

    def _sizes(self) -> dict[str, int]:
        return {key: pss_bytes(t.pid) for key, t in self._templates.items()}

    def _enforce_budget(self) -> None:
        sizes = self._sizes()
        last_used = {key: t.last_used for key, t in self._templates.items()}
        for key in templates_to_evict(sizes, last_used, self._budget):
            template = self._templates.pop(key)
            if sizes.pop(key) > self._budget:
                self._oversized.add(key)
            self._retire(template)
        self._send_up(ipc.Kind.TEMPLATES, 0, {"sizes": sizes})

    def _relay(self, sock: socket.socket) -> None:
        """Pass a template's FORKED / FORK_ERROR / EXITED up to the gateway."""
        try:
            frame = ipc.recv_frame_blocking(sock)
        except OSError:
            frame = None
        if frame is None:
            self._drop_socket(sock)
            return
        self._send_up(frame.kind, frame.request_id, frame.meta)

    def _drop_socket(self, sock: socket.socket) -> None:
        if self._ort is not None and self._ort.sock is sock:
            self._ort = None
        for key, t in list(self._templates.items()):
            if t.sock is sock:
                del self._templates[key]
        for pid, s in list(self._draining.items()):
            if s is sock:
                del self._draining[pid]
        with contextlib.suppress(OSError):
            sock.close()

    def _reap(self) -> None:
        with contextlib.suppress(BlockingIOError):  # drain the SIGCHLD wakeup pipe
            while os.read(self._wake_r, 512):
                pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self._children.pop(pid, None)
            if child is not None and child.template is None:
                code = os.waitstatus_to_exitcode(status)
                self._send_up(ipc.Kind.EXITED, 0, {"pid": pid, "returncode": code})


_ORT_KEY = "runtime:onnxruntime"
# Runtimes whose instances fork from the onnxruntime fork server (a Python model may use it).
_ORT_RUNTIMES = ("onnx", "python")


def _run_ort_server(sock: socket.socket) -> int:
    """A second fork server that has imported onnxruntime, for onnx and python instances:
    importing onnxruntime in each instance costs ~50 ms of its cold start. It carries
    onnxruntime's import-time housekeeping thread, like a template and for the same reasons
    (see _run_template); what it forks is single-threaded and never touches that thread."""
    set_process_name("zs-forkserv-ort")
    try:
        importlib.import_module("onnxruntime")
        importlib.import_module("zeroserve.runtimes.onnx")
        importlib.import_module("zeroserve.runtimes.python")
    except ImportError as exc:
        ipc.send_blocking(sock, ipc.encode(ipc.Kind.LOAD_ERROR, 0, {"error": str(exc)}))
        return 1
    threads = thread_count()
    meta = {"pid": os.getpid(), "threads": threads}
    ipc.send_blocking(sock, ipc.encode(ipc.Kind.READY, 0, meta))
    ForkLoop(sock, allowed_threads=threads).run()
    return 0


def _key(spec: InstanceSpec) -> str:
    # The options (e.g. the Python class) are part of what a template loaded.
    options = hashlib.sha256(json.dumps(spec.options, sort_keys=True).encode()).hexdigest()
    return f"{spec.model}:{spec.version}:{spec.artifact_sha256}:{options[:12]}"


def _warm_up(predictor: Predictor) -> None:
    """One prediction on zeros of the declared shapes, so lazy initialisation (allocators,
    kernels) happens once in the template instead of in every instance."""
    import numpy as np

    from zeroserve.tensors import numpy_dtype

    sig = predictor.signature
    if not sig.inputs_known or any(s.datatype is None for s in sig.inputs):
        return
    batch = {}
    for s in sig.inputs:
        shape = [1 if d < 0 else d for d in (s.shape or [1])]
        dtype = numpy_dtype(s.datatype or "FP32")
        batch[s.name] = (
            np.full(shape, b"", dtype=object) if s.datatype == "BYTES" else np.zeros(shape, dtype)
        )
    with contextlib.suppress(Exception):  # a model may reject zeros; the template still serves
        predictor.predict(batch)


def _run_template(sock: socket.socket, spec: InstanceSpec) -> int:
    set_process_name("zs-template")
    # No platform environment and no secrets while it loads (each instance forked from it
    # gets its own environment after the fork), and a temp dir of its own (sandbox.py).
    tmp_dir = enter_template(spec)
    try:
        return _load_template(sock, spec)
    finally:
        remove_tmp_dir(tmp_dir)


def _load_template(sock: socket.socket, spec: InstanceSpec) -> int:
    # Threads the runtime's framework starts when imported are the baseline: onnxruntime
    # starts one housekeeping thread (idle in a timed condition wait) at import. A child
    # forked from here has no copy of it and never touches it: its sessions are
    # single-threaded (no pool to share) and it exits with os._exit, skipping the
    # framework's teardown. What is not allowed is any thread that *loading or predicting*
    # starts (an intra-op pool, an OpenMP team): such a runtime falls back to the fork path.
    try:
        importlib.import_module(f"zeroserve.runtimes.{spec.runtime}")
    except ImportError as exc:
        ipc.send_blocking(sock, ipc.encode(ipc.Kind.LOAD_ERROR, 0, {"error": str(exc)}))
        return 1
    # A Python model imports its frameworks while loading; onnxruntime's import thread is the
    # known, idle one, so it is imported first and counted in the baseline.
    with contextlib.suppress(ImportError):
        importlib.import_module("onnxruntime")
    baseline = thread_count()
    try:
        predictor, timings = load(spec)
    except LoadFailed as exc:
        ipc.send_blocking(sock, ipc.encode(ipc.Kind.LOAD_ERROR, 0, exc.meta()))
        return 1
    _warm_up(predictor)
    threads = thread_count()
    if threads != baseline:
        error = f"{spec.runtime} started {threads - baseline} threads while loading; not fork-safe"
        ipc.send_blocking(sock, ipc.encode(ipc.Kind.LOAD_ERROR, 0, {"error": error}))
        return 1
    meta = {"pid": os.getpid(), "threads": threads, **timings}
    ipc.send_blocking(sock, ipc.encode(ipc.Kind.READY, 0, meta))
    ForkLoop(sock, predictor=predictor, allowed_threads=baseline).run()
    return 0


def main(argv: list[str]) -> int:
    die_with_parent()
    set_process_name("zs-forkserver")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway stops us, not the terminal
    up = socket.socket(fileno=int(argv[0]))
    budget = int(argv[1])
    # Import what every instance needs, once: numpy, pydantic and zeroserve's worker (imported
    # above). Not onnxruntime: importing it starts a thread (see _run_template), and this
    # process must stay single-threaded. Instances import their runtime after the fork.
    import numpy  # noqa: F401

    ipc.send_blocking(
        up, ipc.encode(ipc.Kind.READY, 0, {"pid": os.getpid(), "threads": thread_count()})
    )
    ForkLoop(up, budget_bytes=budget, root=True).run()
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    os._exit(code)
