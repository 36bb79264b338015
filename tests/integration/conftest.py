"""A real `zeroserve up` on a free 127.0.0.1 port, with real worker processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

MODELS = Path(__file__).parent / "models"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    state_dir: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.port = free_port()
        self.log_path = self.state_dir.parent / f"server-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zeroserve.cli", "up", "--port", str(self.port),
                 "--state-dir", str(self.state_dir), *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"zeroserve up exited: {self.log()}"
            try:
                if httpx.get(f"{self.url}/v2/health/live", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"zeroserve did not come up: {self.log()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def client(self, timeout_s: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout_s)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "zeroserve.cli", *args, "--url", self.url],
            capture_output=True, text=True, env=self.env, timeout=120,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
        return result

    def deploy(self, name: str, path: Path, *flags: str) -> int:
        out = self.cli("deploy", name, str(path), *flags).stdout
        return int(out.split(" version ")[1].split()[0])

    def status(self, name: str) -> dict[str, Any]:
        with self.client() as c:
            r = c.get(f"/api/models/{name}")
            assert r.status_code == 200, r.text
            doc: dict[str, Any] = r.json()
            return doc

    def worker_pids(self) -> list[int]:
        """Live instance processes of this server: its descendants named zs-instance (forked
        ones share the fork server's command line, so the name is what tells them apart)."""
        if self.proc is None:
            return []
        return [pid for pid, name in descendants(self.proc.pid) if name == "zs-instance"]


def descendants(root: int) -> list[tuple[int, str]]:
    """(pid, process name) of every live process below `root`."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            names[int(entry)] = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":  # a zombie has exited, it is only not reaped yet
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append((child, names.get(child, "")))
            todo.append(child)
    return found


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def make(*args: str, state_dir: Path | None = None, **env: str) -> Server:
        full_env = {**os.environ, **env}
        server = Server(state_dir or tmp_path / "state", full_env, list(args))
        servers.append(server)
        return server.start()

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server(server_factory: Any) -> Server:
    return server_factory()  # type: ignore[no-any-return]


def wait_for(predicate: Any, timeout_s: float, interval_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")
