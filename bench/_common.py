"""Helpers shared by the commands under bench/: machine facts, percentiles, starting and
stopping `zeroserve up` (and other servers) on free ports, deploying, and reading what the
platform says about itself (its `started ...` log lines, `/metrics`, `GET /api/models/NAME`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
IRIS = ROOT / "examples" / "iris" / "iris.onnx"
# The MiniLM example's model folder (model.onnx + tokenizer.json + model.py), served by the
# Python runtime; examples/minilm/build.py makes it.
MINILM = ROOT / "examples" / "minilm" / "build" / "minilm"
MINILM_TEXT = "a cat on a mat"
MINILM_BODY = json.dumps(
    {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [MINILM_TEXT]}]}
).encode()
# bench/load.py's MiniLM request: one sentence of about ten words (13 tokens with [CLS]/[SEP]).
MINILM_LOAD_TEXT = "a sentence of about ten words for the embedding benchmark"
MINILM_LOAD_BODY = json.dumps(
    {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [MINILM_LOAD_TEXT]}]}
).encode()
# One iris flower (setosa), as a KServe V2 JSON request.
IRIS_INPUT = [5.1, 3.5, 1.4, 0.2]
BODY = json.dumps(
    {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": IRIS_INPUT}]}
).encode()
HEADERS = {"content-type": "application/json"}
STARTED_RE = re.compile(
    r"started (?P<id>\S+) in (?P<total>[\d.]+) ms"
    r" \(fetch (?P<fetch>[\d.]+), load (?P<load>[\d.]+), (?P<path>[\w-]+)\)"
)
PACKAGES = (
    "zeroserve", "onnxruntime", "tokenizers", "uvicorn", "starlette", "httpx", "numpy", "uvloop"
)  # fmt: skip

console = Console()


class BenchError(Exception):
    """Something the benchmark needs did not happen; the message says what."""


# -- small helpers ---------------------------------------------------------------------------


def run_bench(run: Callable[[], dict[str, Any]], finish: Callable[[dict[str, Any]], int]) -> int:
    """Every bench's `main`: run it, note the load at the end, let it report (`finish` prints,
    writes its files and returns the exit code); a BenchError is exit code 1."""
    try:
        result = run()
    except BenchError as exc:
        console.print(f"[red]benchmark failed:[/red] {exc}", highlight=False)
        return 1
    result["machine"]["loadavg_at_end"] = list(os.getloadavg())
    return finish(result)


def write_json(path: Path, result: dict[str, Any], **dump: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, **dump) + "\n")


def no_nan(value: Any) -> Any:
    """NaN (a summary of no values) as null: NaN is not JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_nan(v) for v in value]
    return value


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    out = {f"p{q:g}": percentile(values, q) for q in qs}
    out["max"] = max(values) if values else float("nan")
    out["mean"] = statistics.fmean(values) if values else float("nan")
    out["n"] = float(len(values))
    return out


def _first_field(path: str, key: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return "unknown"


def machine_info(packages: Sequence[str] = PACKAGES) -> dict[str, Any]:
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": nproc,
        "cpu_count": os.cpu_count(),
        "cpu_model": _first_field("/proc/cpuinfo", "model name"),
        "mem_total": _first_field("/proc/meminfo", "MemTotal"),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
        "packages": versions(*packages),
    }


def versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_info() -> dict[str, Any]:
    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout if done.returncode == 0 else ""

    dirty = [line[3:] for line in git("status", "--porcelain", "src").splitlines()]
    diff = git("diff", "HEAD", "--", "src")
    return {
        "commit": git("rev-parse", "HEAD").strip(),
        "src_dirty": bool(dirty),
        "src_changed": dirty,
        # Identifies the uncommitted state of src/ that was measured (empty when clean).
        "src_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else "",
    }


def zeroserve_command() -> list[str]:
    script = Path(sys.executable).parent / "zeroserve"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from zeroserve.cli import main; main()"]


def ensure_model() -> None:
    if not IRIS.exists():
        console.print("[dim]building examples/iris/iris.onnx[/dim]")
        build = ROOT / "examples" / "iris" / "build.py"
        subprocess.run([sys.executable, str(build)], check=True, capture_output=True)


def ensure_minilm() -> None:
    if not all((MINILM / f).is_file() for f in ("model.onnx", "tokenizer.json", "model.py")):
        console.print("[dim]building examples/minilm/build/minilm (needs the examples extra)[/dim]")
        build = ROOT / "examples" / "minilm" / "build.py"
        done = subprocess.run(
            [sys.executable, str(build)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise BenchError(f"{build.relative_to(ROOT)} failed:\n{done.stderr[-2000:]}")


def phase(title: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    console.print(f"[bold]{title}[/bold]")
    t0 = time.perf_counter()
    out = fn()
    console.print(f"  [dim]{time.perf_counter() - t0:.1f} s[/dim]")
    return out


# -- processes -------------------------------------------------------------------------------


@dataclass
class Served:
    """A server subprocess whose stdout and stderr go to files we can read back."""

    name: str
    proc: subprocess.Popen[bytes]
    base_url: str
    stderr_path: Path
    stdout_path: Path

    def stderr_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def wait_ready(server: Served, path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(
                f"{server.name} exited with code {server.proc.returncode} while starting:\n"
                f"{server.stderr_tail()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.base_url + path, timeout=1.0, trust_env=False).status_code == 200:
                return
        time.sleep(0.05)
    raise BenchError(f"{server.name} not ready after {timeout_s:g} s:\n{server.stderr_tail()}")


def stop(server: Served) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@contextlib.contextmanager
def serve(
    name: str, argv: list[str], port: int, workdir: Path, *, ready_path: str,
    env: dict[str, str] | None = None, unset_env: Sequence[str] = (),
) -> Iterator[Served]:  # fmt: skip
    stdout_path, stderr_path = workdir / f"{name}.out", workdir / f"{name}.err"
    environ = {k: v for k, v in os.environ.items() if k not in unset_env}
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT,
            env={**environ, **(env or {})}, start_new_session=True,
        )  # fmt: skip
    server = Served(name, proc, f"http://127.0.0.1:{port}", stderr_path, stdout_path)
    try:
        wait_ready(server, ready_path, timeout_s=60.0)
        yield server
    finally:
        stop(server)


@contextlib.contextmanager
def zeroserve_up(
    workdir: Path, *, name: str = "zeroserve", env: dict[str, str] | None = None,
    unset_env: Sequence[str] = (), extra_args: Sequence[str] = (),
) -> Iterator[Served]:  # fmt: skip
    """`zeroserve up --log-level info` on a free port with its own state dir under workdir."""
    port = free_port()
    argv = [
        *zeroserve_command(), "up", "--port", str(port),
        "--state-dir", str(workdir / f"{name}-state"), "--log-level", "info", *extra_args,
    ]  # fmt: skip
    with serve(
        name, argv, port, workdir, ready_path="/v2/health/ready", env=env, unset_env=unset_env
    ) as server:
        yield server


def deploy(
    server: Served, name: str, idle_timeout_s: float, *, snapshot: bool = False,
    artifact: Path = IRIS,
) -> None:  # fmt: skip
    argv = [
        *zeroserve_command(), "deploy", name, str(artifact), "--url", server.base_url,
        "--idle-timeout", f"{idle_timeout_s:g}", *(["--snapshot"] if snapshot else []),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise BenchError(f"zeroserve deploy {name} failed ({done.returncode}):\n{done.stderr}")


@contextlib.contextmanager
def explained(server: Served) -> Iterator[None]:
    """An HTTP failure mid-run comes with the server's last log lines (its dir is temporary)."""
    try:
        yield
    except httpx.HTTPError as exc:
        raise BenchError(f"{exc!r}; {server.name} stderr ends:\n{server.stderr_tail()}") from exc


def descendants(root_pid: int) -> list[tuple[int, str]]:
    """(pid, comm) of every live process below root_pid, from /proc (Linux; else empty).

    Forked instances hang below the fork server or a snapshot template, not below the
    gateway directly, and the fork server has its own session: so walk the parent links."""
    if not Path("/proc").is_dir():
        return []
    children: dict[int, list[tuple[int, str]]] = {}
    for pid, (ppid, comm, fields) in _tree_stats().items():
        if fields[0] != "Z":  # a zombie holds no memory and runs nothing
            children.setdefault(ppid, []).append((pid, comm))
    out: list[tuple[int, str]] = []
    todo = [root_pid]
    while todo:
        for pid, comm in children.get(todo.pop(), []):
            out.append((pid, comm))
            todo.append(pid)
    return out


def parent_comm(pid: int) -> str:
    """/proc/PPID/comm of pid's parent ("" once either is gone)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        return Path(f"/proc/{ppid}/comm").read_text().strip()
    return ""


def _tree_stats() -> dict[int, tuple[int, str, list[str]]]:
    """pid -> (ppid, comm, the fields after comm) for every process in /proc."""
    out: dict[int, tuple[int, str, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        out[int(entry.name)] = (int(fields[1]), comm, fields)
    return out


class CpuMeter:
    """How busy the machine was with *other* work while we measured: all CPU time in
    /proc/stat minus that of this process, its reaped children, and the server's process
    tree (live processes, zombies, and the children they reaped). On a shared 2-core machine
    a test run next door shows up here, and in the figures."""

    def __init__(self, root_pid: int) -> None:
        self._root = root_pid
        self._tick = float(os.sysconf("SC_CLK_TCK"))
        self._start = self._sample()

    def _ours_s(self) -> float:
        import resource

        own = sum(
            r.ru_utime + r.ru_stime
            for r in (resource.getrusage(resource.RUSAGE_SELF),
                      resource.getrusage(resource.RUSAGE_CHILDREN))
        )  # fmt: skip
        stats = _tree_stats()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        ticks, todo = 0, [self._root]
        while todo:
            pid = todo.pop()
            if pid in stats:
                ticks += sum(int(x) for x in stats[pid][2][11:15])  # utime stime cutime cstime
            todo += children.get(pid, [])
        return own + ticks / self._tick

    def _sample(self) -> tuple[float, float, float, float]:
        """(wall s, busy s, steal s, ours s)."""
        cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = cpu[:8]
        busy = (user + nice + system + irq + softirq) / self._tick
        return time.perf_counter(), busy, steal / self._tick, self._ours_s()

    def stop(self) -> dict[str, float]:
        """Average cores busy over the interval: in total, ours, others', stolen."""
        end = self._sample()
        wall, busy, steal, ours = (b - a for a, b in zip(self._start, end, strict=True))
        return {
            "wall_s": wall,
            "busy_cores": busy / wall,
            "ours_cores": ours / wall,
            "other_cores": max(0.0, busy - ours) / wall,
            "steal_cores": steal / wall,
        }


# -- reading what the platform says about itself ---------------------------------------------


class LogTail:
    """New `started ...` lines on the platform's stderr since the last read."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0

    def skip_to_end(self) -> None:
        self._offset = self._path.stat().st_size

    def starts(self, model: str | None = None) -> list[dict[str, Any]]:
        """Starts logged since the last read (of `model`'s instances, or of all)."""
        with self._path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data.rfind(b"\n") + 1  # leave a half-written line for the next read
        self._offset += complete
        found = []
        for m in STARTED_RE.finditer(data[:complete].decode(errors="replace")):
            if model is None or m["id"].startswith(f"{model}-v"):
                found.append(
                    {
                        "instance_id": m["id"],
                        "total_ms": float(m["total"]),
                        "fetch_ms": float(m["fetch"]),
                        "load_ms": float(m["load"]),
                        "path": m["path"],
                    }
                )
        return found

    def wait_starts(self, model: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.starts(model)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.01)


_LABELS_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def histogram_totals(
    metrics_text: str, name: str, model: str, **match: str
) -> dict[str, float]:  # fmt: skip
    """Sum and count of a histogram across its series for one model (and any other labels
    given, e.g. path="fork")."""
    totals = {"sum": 0.0, "count": 0.0}
    want = {"model": model, **match}
    for line in metrics_text.splitlines():
        for part in ("sum", "count"):
            prefix = f"{name}_{part}{{"
            if line.startswith(prefix):
                labels = dict(_LABELS_RE.findall(line[len(prefix) : line.index("}")]))
                if all(labels.get(k) == v for k, v in want.items()):
                    totals[part] += float(line.rsplit(" ", 1)[1])
    return totals


def model_status(client: httpx.Client, base_url: str, model: str) -> dict[str, Any]:
    r = client.get(f"{base_url}/api/models/{model}")
    r.raise_for_status()
    doc: dict[str, Any] = r.json()
    return doc


def is_at_zero(doc: dict[str, Any]) -> bool:
    """No live instance, and none starting or still stopping (its process not yet gone)."""
    busy: int = sum(v.get("starting", 0) + v.get("stopping", 0) for v in doc.get("versions", []))
    return busy == 0 and int(doc["instances"]) == 0


def at_zero(client: httpx.Client, base_url: str, model: str) -> bool:
    return is_at_zero(model_status(client, base_url, model))


def wait_for_zero(client: httpx.Client, base_url: str, model: str, timeout_s: float) -> float:
    """Seconds until the model was at zero."""
    t0 = time.perf_counter()
    while not at_zero(client, base_url, model):
        if time.perf_counter() - t0 > timeout_s:
            raise BenchError(f"{model} still has instances after {timeout_s:g} s")
        time.sleep(0.01)
    return time.perf_counter() - t0
