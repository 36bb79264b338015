"""Asynchronous jobs: throughput, queue latency, and recovery after `kill -9`, for iris ONNX.

    .venv/bin/python bench/jobs.py [--jobs N] [--runs N] [--max-instances N] [--quick]
        [--out bench/results/jobs.json]

Everything runs on free 127.0.0.1 ports with temporary state dirs, and every server started is
stopped again (also on errors). Jobs go in with `POST /api/models/NAME/jobs` (a V2 JSON body,
202 + a job id) and are read back with `GET /api/jobs?model=NAME` pages, whose `created_at`,
`started_at` (first attempt) and `finished_at` are the platform's own wall-clock timestamps.

(a) Throughput. One `zeroserve up`; iris is deployed twice, as `iris-1` (`--max-instances 1`)
    and `iris-max` (`--max-instances M`, default 4), both `--concurrency C` (4) and
    `--max-batch-size B` (1: off), and pinned at that size with `--min-instances` equal to
    the maximum (`--no-pin`: min 0, the autoscaler decides), so "at 1 instance" and "at M
    instances" mean exactly that; an untimed warm-up of jobs runs first. Per run and
    deployment (`--runs`, alternating the order of the deployments):
    - trickle: `--trickle-jobs` jobs one at a time at `--trickle-rate` per second, far below
      capacity: queue latency with no backlog (the dispatcher's own delay);
    - burst: `--jobs` jobs submitted as fast as `--submitters` concurrent httpx connections
      manage. jobs/s = jobs / (the last job's finished_at - the first submit), acks/s = jobs /
      (first submit -> last 202). The command polls `GET /api/jobs?status=queued|running|failed
      &limit=1` until nothing is left, then reads every job back. Queue latency = started_at -
      created_at (under a burst this is mostly the backlog ahead of a job), end to end =
      finished_at - created_at. `zeroserve_job_queue_seconds` deltas in /metrics cross-check
      the mean. Also recorded: the jobs not yet finished at the last 202 (near 0: the runner
      kept up, and jobs/s is the submit rate) and the CPU the gateway process used per job.
(b) Recovery. Per run a fresh `zeroserve up` and a slow Python model written to the temporary
    dir (`slow`: x INT64 [-1, 1] -> y = 2x + 1 after sleeping `--slow-ms`, appending every x
    it computed to a log file), `--max-instances 2 --concurrency 2`. `--recovery-jobs` jobs
    (x = 0..N-1) are submitted; once the job at `--kill-at` of the way through the submission
    order has succeeded, the gateway process gets SIGKILL (its instance processes are checked
    to be gone), and `zeroserve up` is started again on the same state dir and port. Timed
    from that restart command: the platform answering /v2/health/live and /ready, the first
    and last reclaimed job (one with a lost attempt) finishing, and every job finished (the
    first start, on the empty state dir, is timed the same way for comparison). Then it
    checks that every job ended succeeded exactly once: all N succeeded, none dead or failed,
    each job's own result (y = 2x + 1, read with GET /api/jobs/ID), and from the model's log
    that every x was computed, and computed twice only for jobs that lost an attempt.

`--quick` is a smoke run of about 15-30 s (100 jobs per burst, 1 run, 10 trickle jobs, 60
recovery jobs; writes bench/results/jobs-quick.json); the defaults take about a minute on 2
cores. Reported figures are medians over the runs. The machine may be shared: each phase records
how many cores other processes kept busy meanwhile (from /proc). Prints tables, writes JSON
(machine, git, settings, every run, medians). Exits 0, 1 if the run could not be made, 2 if a
check failed (a job not succeeded exactly once, a wrong result, an instance surviving the kill,
no job running at the kill).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _common import (
    BENCH_DIR,
    BODY,
    HEADERS,
    IRIS,
    ROOT,
    BenchError,
    CpuMeter,
    Served,
    console,
    descendants,
    ensure_model,
    explained,
    free_port,
    git_info,
    histogram_totals,
    machine_info,
    model_status,
    no_nan,
    phase,
    run_bench,
    stop,
    summarize,
    utc_now,
    write_json,
    zeroserve_command,
    zeroserve_up,
)  # fmt: skip
from rich.console import Console
from rich.table import Table

SLOW = "slow"
QUEUE_SECONDS = "zeroserve_job_queue_seconds"
PAGE = 500  # the most jobs GET /api/jobs returns at once
UNFINISHED = ("queued", "running", "failed")  # "failed": between attempts, a retry is due
LOST = "was lost"  # in the error the platform records for an attempt lost with its worker
RECLAIMED_RE = re.compile(r"(\d+) jobs were running when the platform stopped")

SLOW_MODEL = '''"""bench/jobs.py's slow model: y = 2x + 1 after a sleep; logs each x computed."""

import os
import time
from typing import ClassVar

LOG = {log!r}
DELAY_S = {delay_s!r}


class Slow:
    inputs: ClassVar = [{{"name": "x", "datatype": "INT64", "shape": [-1, 1]}}]
    outputs: ClassVar = [{{"name": "y", "datatype": "INT64", "shape": [-1, 1]}}]

    def load(self, path):
        self.fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def predict(self, batch):
        x = batch["x"]
        time.sleep(DELAY_S)
        os.write(self.fd, "".join(f"{{int(v)}}\\n" for v in x.ravel()).encode())
        return {{"y": x * 2 + 1}}
'''


def slow_body(x: int) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1, 1], "data": [x]}]}
    ).encode()


# -- talking to the platform -----------------------------------------------------------------


def deploy(server: Served, name: str, artifact: Path, *flags: str) -> None:
    argv = [*zeroserve_command(), "deploy", name, str(artifact), "--url", server.base_url, *flags]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise BenchError(f"zeroserve deploy {name} failed ({done.returncode}):\n{done.stderr}")


def async_client(server: Served, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=server.base_url, timeout=60.0, trust_env=False, limits=limits
    )  # no proxy for 127.0.0.1


@dataclass
class Submitted:
    ids: list[str]  # in the order of the bodies
    t0_epoch: float  # time.time() just before the first POST
    t0: float  # perf_counter() of the same moment
    t_acked: float  # perf_counter() when the last 202 was read


async def submit_all(
    client: httpx.AsyncClient, model: str, bodies: Sequence[bytes], submitters: int
) -> Submitted:
    """POST every body as a job, `submitters` at a time, as fast as they are acknowledged."""
    ids: list[str] = [""] * len(bodies)
    todo = iter(range(len(bodies)))  # shared by the submitters: each takes the next index

    async def submitter() -> None:
        for i in todo:
            r = await client.post(f"/api/models/{model}/jobs", content=bodies[i], headers=HEADERS)
            if r.status_code != 202:
                raise BenchError(f"job {i} of {model}: {r.status_code} {r.text[:300]}")
            ids[i] = r.json()["id"]

    t0_epoch, t0 = time.time(), time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(submitters)))
    return Submitted(ids, t0_epoch, t0, time.perf_counter())


async def submit_paced(
    client: httpx.AsyncClient, model: str, body: bytes, n: int, rate: float
) -> Submitted:
    """One job at a time, the i-th at t0 + i / rate."""
    ids = []
    t0_epoch, t0 = time.time(), time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        r = await client.post(f"/api/models/{model}/jobs", content=body, headers=HEADERS)
        if r.status_code != 202:
            raise BenchError(f"trickle job {i} of {model}: {r.status_code} {r.text[:300]}")
        ids.append(r.json()["id"])
    return Submitted(ids, t0_epoch, t0, time.perf_counter())


async def anything_unfinished(client: httpx.AsyncClient, model: str) -> bool:
    for status in UNFINISHED:
        r = await client.get("/api/jobs", params={"model": model, "status": status, "limit": 1})
        r.raise_for_status()
        if r.json()["jobs"]:
            return True
    return False


async def read_back(client: httpx.AsyncClient, model: str, ids: Sequence[str]) -> dict[str, Any]:
    """id -> job (without result) for every id, from GET /api/jobs pages (newest first)."""
    wanted, found = set(ids), {}
    cursor: int | None = None
    while len(found) < len(wanted):
        params: dict[str, Any] = {"model": model, "limit": PAGE}
        if cursor is not None:
            params["cursor"] = cursor
        r = await client.get("/api/jobs", params=params)
        r.raise_for_status()
        page = r.json()
        found.update((j["id"], j) for j in page["jobs"] if j["id"] in wanted)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    if len(found) != len(wanted):
        raise BenchError(f"{len(wanted) - len(found)} of {len(wanted)} jobs of {model} not listed")
    return found


async def wait_finished(
    client: httpx.AsyncClient, model: str, ids: Sequence[str], timeout_s: float, poll_s: float
) -> tuple[float, dict[str, Any]]:
    """Poll until no job of `model` is unfinished and every one of `ids` has finished; the
    perf_counter() when that was seen, and the jobs read back."""
    deadline = time.perf_counter() + timeout_s
    while True:
        if not await anything_unfinished(client, model):
            seen = time.perf_counter()
            jobs = await read_back(client, model, ids)
            if all(j["status"] not in UNFINISHED for j in jobs.values()):
                return seen, jobs
        if time.perf_counter() > deadline:
            raise BenchError(f"jobs of {model} still unfinished after {timeout_s:g} s")
        await asyncio.sleep(poll_s)


async def sample_instances(client: httpx.AsyncClient, model: str, peak: list[int]) -> None:
    """Keep peak[0] at the most instances GET /api/models/NAME reported (until cancelled)."""
    while True:
        r = await client.get(f"/api/models/{model}")
        if r.status_code == 200:
            peak[0] = max(peak[0], int(r.json()["instances"]))
        await asyncio.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (its own threads, not its children), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape_queue_histogram(client: httpx.Client, server: Served, model: str) -> dict[str, float]:
    r = client.get(f"{server.base_url}/metrics")
    r.raise_for_status()
    return histogram_totals(r.text, QUEUE_SECONDS, model)


# -- figures from jobs read back -------------------------------------------------------------


def latencies(jobs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Queue (created -> first attempt started), run (started -> finished), end to end, ms."""
    done = [j for j in jobs if j["started_at"] is not None and j["finished_at"] is not None]
    return {
        "queue_ms": summarize([(j["started_at"] - j["created_at"]) * 1e3 for j in done]),
        "run_ms": summarize([(j["finished_at"] - j["started_at"]) * 1e3 for j in done]),
        "e2e_ms": summarize([(j["finished_at"] - j["created_at"]) * 1e3 for j in done]),
    }


def statuses(jobs: Sequence[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(j["status"] for j in jobs))


def retried(jobs: Sequence[dict[str, Any]]) -> int:
    return sum(1 for j in jobs if j["attempts"] != 1)


def median_of(runs: Sequence[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        if value is not None and not math.isnan(value):
            values.append(float(value))
    return statistics.median(values) if values else float("nan")


# -- (a) throughput --------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    key: str  # "1" or "max"
    model: str
    max_instances: int

    def capacity(self, args: argparse.Namespace) -> int:
        return self.max_instances * args.concurrency * args.max_batch_size


def deploy_iris(
    server: Served, client: httpx.Client, cfg: Config, args: argparse.Namespace
) -> None:
    pinned = cfg.max_instances if args.pin else 0
    deploy(
        server, cfg.model, IRIS,
        "--max-instances", str(cfg.max_instances), "--min-instances", str(pinned),
        "--concurrency", str(args.concurrency), "--max-batch-size", str(args.max_batch_size),
        "--idle-timeout", "3600",
    )  # fmt: skip
    deadline = time.monotonic() + args.timeout
    while int(model_status(client, server.base_url, cfg.model)["instances"]) < pinned:
        if time.monotonic() > deadline:
            raise BenchError(f"{cfg.model}: {pinned} instances not up after {args.timeout:g} s")
        time.sleep(0.05)


async def warm_up(server: Served, cfg: Config, args: argparse.Namespace) -> None:
    n = max(20, 2 * cfg.capacity(args))
    async with async_client(server, args.submitters) as client:
        sub = await submit_all(client, cfg.model, [BODY] * n, args.submitters)
        await wait_finished(client, cfg.model, sub.ids, args.timeout, args.poll)


async def trickle(server: Served, cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    async with async_client(server, 2) as client:
        sub = await submit_paced(client, cfg.model, BODY, args.trickle_jobs, args.trickle_rate)
        _, jobs = await wait_finished(client, cfg.model, sub.ids, args.timeout, args.poll)
    listed = list(jobs.values())
    return {"jobs": len(listed), "rate_per_s": args.trickle_rate, "statuses": statuses(listed),
            **latencies(listed)}  # fmt: skip


async def burst(server: Served, cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    peak = [0]
    gateway_cpu, own_cpu = cpu_seconds(server.proc.pid), time.process_time()
    async with async_client(server, args.submitters + 2) as client:
        sampler = asyncio.create_task(sample_instances(client, cfg.model, peak))
        try:
            sub = await submit_all(client, cfg.model, [BODY] * args.jobs, args.submitters)
            seen, jobs = await wait_finished(client, cfg.model, sub.ids, args.timeout, args.poll)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
    gateway_cpu = cpu_seconds(server.proc.pid) - gateway_cpu
    own_cpu = time.process_time() - own_cpu
    listed = list(jobs.values())
    last = max(j["finished_at"] for j in listed if j["finished_at"] is not None)
    wall_s = last - sub.t0_epoch
    ack_s = sub.t_acked - sub.t0
    acked_epoch = sub.t0_epoch + ack_s
    return {
        "jobs": len(listed),
        "submit_s": ack_s,
        "acks_per_s": len(listed) / ack_s,
        "wall_s": wall_s,
        "jobs_per_s": len(listed) / wall_s,
        "seen_done_s": seen - sub.t0,  # when the polling client saw it (poll granularity)
        # The backlog left once everything was acknowledged, and how long it took to drain:
        # small when the runner keeps up with submission (jobs/s is then the submit rate).
        "unfinished_at_last_ack": sum(
            1 for j in listed if j["finished_at"] is None or j["finished_at"] > acked_epoch
        ),
        "drain_after_last_ack_s": last - acked_epoch,
        "statuses": statuses(listed),
        "retried": retried(listed),
        "peak_instances": peak[0],
        # CPU of the gateway process alone (not its instances), and of this client, per job:
        # submitting, leasing, running and completing it, plus the polling.
        "gateway_cpu_ms_per_job": gateway_cpu / len(listed) * 1e3,
        "client_cpu_ms_per_job": own_cpu / len(listed) * 1e3,
        **latencies(listed),
    }


def measure_run(
    client: httpx.Client, server: Served, cfg: Config, run: int, args: argparse.Namespace
) -> dict[str, Any]:
    before = scrape_queue_histogram(client, server, cfg.model)
    cpu = CpuMeter(server.proc.pid)
    out: dict[str, Any] = {"run": run}
    if args.trickle_jobs:
        out["trickle"] = asyncio.run(trickle(server, cfg, args))
    out["burst"] = asyncio.run(burst(server, cfg, args))
    out["cpu"] = cpu.stop()
    after = scrape_queue_histogram(client, server, cfg.model)
    count = after["count"] - before["count"]
    out["metrics_queue_mean_ms"] = (after["sum"] - before["sum"]) / count * 1e3 if count else None
    out["metrics_queue_count"] = count
    return out


def summarize_config(
    cfg: Config, runs: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    med: dict[str, Any] = {
        k: median_of(runs, "burst", k) for k in ("jobs_per_s", "acks_per_s", "wall_s")
    }
    for piece in ("queue_ms", "e2e_ms", "run_ms"):
        for q in ("p50", "p95"):
            med[f"{piece[:-3]}_{q}_ms"] = median_of(runs, "burst", piece, q)
            if args.trickle_jobs:
                med[f"trickle_{piece[:-3]}_{q}_ms"] = median_of(runs, "trickle", piece, q)
    med["peak_instances"] = median_of(runs, "burst", "peak_instances")
    for k in ("gateway_cpu_ms_per_job", "client_cpu_ms_per_job", "unfinished_at_last_ack"):
        med[k] = median_of(runs, "burst", k)
    med["other_cores"] = median_of(runs, "cpu", "other_cores")
    not_ok = sum(
        n for r in runs for part in ("burst", "trickle") if part in r
        for s, n in r[part]["statuses"].items() if s != "succeeded"
    )  # fmt: skip
    return {
        "model": cfg.model,
        "max_instances": cfg.max_instances,
        "min_instances": cfg.max_instances if args.pin else 0,
        "capacity_in_flight": cfg.capacity(args),
        "runs": runs,
        "median": med,
        "not_succeeded": not_ok,
    }


def measure_throughput(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    configs = [Config("1", "iris-1", 1), Config("max", "iris-max", args.max_instances)]
    by_cfg: dict[str, list[dict[str, Any]]] = {c.key: [] for c in configs}
    with (
        httpx.Client(timeout=60.0, trust_env=False) as client,
        zeroserve_up(work, name="throughput") as server,
        explained(server),
    ):
        cpu = CpuMeter(server.proc.pid)
        for cfg in configs:
            deploy_iris(server, client, cfg, args)
            asyncio.run(warm_up(server, cfg, args))
        for run in range(args.runs):
            for cfg in configs if run % 2 == 0 else configs[::-1]:
                r = measure_run(client, server, cfg, run, args)
                by_cfg[cfg.key].append(r)
                b = r["burst"]
                console.print(
                    f"  run {run + 1}/{args.runs} {cfg.model}: {b['jobs_per_s']:.0f} jobs/s,"
                    f" {b['acks_per_s']:.0f} acks/s, queue p50 {b['queue_ms']['p50']:.0f} ms,"
                    f" peak {b['peak_instances']} instances,"
                    f" other work {r['cpu']['other_cores']:.2f} cores",
                    highlight=False,
                )
        server_cpu = cpu.stop()
    return {
        "configs": {c.key: summarize_config(c, by_cfg[c.key], args) for c in configs},
        "cpu": server_cpu,
    }


# -- (b) recovery after kill -9 --------------------------------------------------------------


def platform_argv(port: int, state_dir: Path) -> list[str]:
    return [
        *zeroserve_command(), "up", "--port", str(port), "--state-dir", str(state_dir),
        "--log-level", "info",
    ]  # fmt: skip


@contextlib.contextmanager
def launched(name: str, argv: list[str], port: int, workdir: Path) -> Iterator[Served]:
    """Start a server without waiting for it (the caller times that); always stopped."""
    stdout_path, stderr_path = workdir / f"{name}.out", workdir / f"{name}.err"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
    server = Served(name, proc, f"http://127.0.0.1:{port}", stderr_path, stdout_path)
    try:
        yield server
    finally:
        stop(server)


def seconds_until_ok(server: Served, path: str, since: float, timeout_s: float) -> float:
    """perf_counter() seconds from `since` until GET path answers 200 (polled every 5 ms)."""
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while time.perf_counter() - since < timeout_s:
            if server.proc.poll() is not None:
                raise BenchError(
                    f"{server.name} exited with code {server.proc.returncode} while starting:\n"
                    f"{server.stderr_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(server.base_url + path).status_code == 200:
                    return time.perf_counter() - since
            time.sleep(0.005)
    raise BenchError(
        f"{server.name}: {path} not 200 after {timeout_s:g} s:\n{server.stderr_tail()}"
    )


def alive(pid: int, comm: str) -> bool:
    """pid still runs the same program (not gone, not a zombie, not reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    same = stat[stat.index("(") + 1 : stat.rindex(")")] == comm
    return same and stat[stat.rindex(")") + 2] != "Z"


def kill_platform(server: Served) -> dict[str, Any]:
    """SIGKILL the gateway; its instance processes should die with it. Any that outlive it
    by 2 s are reported and killed (by pid) so they cannot disturb the restart."""
    tree = descendants(server.proc.pid)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    deadline = time.monotonic() + 2.0
    left = tree
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [(pid, comm) for pid, comm in tree if alive(pid, comm)]
    gone_s = 2.0 - max(0.0, deadline - time.monotonic())
    for pid, comm in left:
        if alive(pid, comm):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return {
        "processes_below_gateway": [f"{pid} {comm}" for pid, comm in tree],
        "survivors": [f"{pid} {comm}" for pid, comm in left],
        "all_gone_within_s": gone_s if not left else None,
    }


async def wait_job_succeeded(
    client: httpx.AsyncClient, job_id: str, timeout_s: float, poll_s: float
) -> str:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        r = await client.get(f"/api/jobs/{job_id}")
        r.raise_for_status()
        status: str = r.json()["status"]
        if status not in UNFINISHED:
            return status
        await asyncio.sleep(poll_s)
    raise BenchError(f"job {job_id} not finished after {timeout_s:g} s")


async def results_ok(client: httpx.AsyncClient, ids: Sequence[str]) -> list[int]:
    """Indices whose result is not y = 2x + 1 of their own x."""
    sem = asyncio.Semaphore(8)

    async def check(x: int, job_id: str) -> bool:
        async with sem:
            r = await client.get(f"/api/jobs/{job_id}")
        r.raise_for_status()
        result = r.json().get("result") or {}
        outputs = {o["name"]: o for o in result.get("outputs", [])}
        return outputs.get("y", {}).get("data") == [2 * x + 1]

    oks = await asyncio.gather(*(check(x, i) for x, i in enumerate(ids)))
    return [x for x, ok in enumerate(oks) if not ok]


@dataclass
class RecoveryRun:
    run: int
    work: Path
    args: argparse.Namespace
    out: dict[str, Any] = field(default_factory=dict)
    port: int = 0  # the first life's, reused by the restart

    @property
    def state_dir(self) -> Path:
        return self.work / f"recovery{self.run}-state"

    @property
    def log(self) -> Path:
        return self.work / f"recovery{self.run}-computed.log"

    def model_file(self) -> Path:
        path = self.work / f"slow{self.run}.py"
        path.write_text(SLOW_MODEL.format(log=str(self.log), delay_s=self.args.slow_ms / 1e3))
        return path

    def first_life(self) -> Submitted:
        """Start, deploy, submit, and kill -9 once the job at --kill-at has succeeded."""
        a = self.args
        self.port = free_port()
        argv = platform_argv(self.port, self.state_dir)
        t0 = time.perf_counter()
        with (
            launched(f"recovery{self.run}", argv, self.port, self.work) as server,
            explained(server),
        ):
            # The same timing on an empty state dir: what the restart's figure compares with.
            self.out["fresh_live_s"] = seconds_until_ok(server, "/v2/health/live", t0, a.timeout)
            self.out["fresh_ready_s"] = seconds_until_ok(server, "/v2/health/ready", t0, a.timeout)
            deploy(
                server, SLOW, self.model_file(), "--max-instances", "2", "--concurrency", "2",
                "--idle-timeout", "3600",
            )  # fmt: skip
            bodies = [slow_body(x) for x in range(a.recovery_jobs)]
            mark = min(a.recovery_jobs - 1, int(a.kill_at * a.recovery_jobs))

            async def submit_and_wait() -> Submitted:
                async with async_client(server, a.submitters) as client:
                    sub = await submit_all(client, SLOW, bodies, a.submitters)
                    await wait_job_succeeded(client, sub.ids[mark], a.timeout, 0.005)
                    running = await client.get(
                        "/api/jobs", params={"model": SLOW, "status": "running", "limit": PAGE}
                    )
                    self.out["running_before_kill"] = len(running.json()["jobs"])
                    return sub

            sub = asyncio.run(submit_and_wait())
            self.out["killed_after_s"] = time.perf_counter() - sub.t0
            self.out["kill"] = kill_platform(server)
        return sub

    def second_life(self, sub: Submitted) -> None:
        a = self.args
        name = f"recovery{self.run}-restart"
        argv = platform_argv(self.port, self.state_dir)
        t_epoch, t0 = time.time(), time.perf_counter()
        with launched(name, argv, self.port, self.work) as server, explained(server):
            self.out["live_s"] = seconds_until_ok(server, "/v2/health/live", t0, a.timeout)
            self.out["ready_s"] = seconds_until_ok(server, "/v2/health/ready", t0, a.timeout)

            async def finish() -> tuple[float, dict[str, Any], list[int]]:
                async with async_client(server, 8) as client:
                    seen, jobs = await wait_finished(client, SLOW, sub.ids, a.timeout, a.poll)
                    return seen, jobs, await results_ok(client, sub.ids)

            seen, jobs, wrong = asyncio.run(finish())
            self.out["seen_done_s"] = seen - t0
            found = RECLAIMED_RE.search(server.stderr_path.read_text(errors="replace"))
            self.out["reclaimed_logged"] = int(found[1]) if found else 0
        self.account(sub, jobs, wrong, t_epoch)

    def account(
        self, sub: Submitted, jobs: dict[str, Any], wrong: list[int], t_epoch: float
    ) -> None:
        listed = [jobs[i] for i in sub.ids]
        lost = {x for x, j in enumerate(listed) if any(LOST in e["error"] for e in j["errors"])}
        finished = [j["finished_at"] for j in listed if j["finished_at"] is not None]
        after = [f for f in finished if f >= t_epoch]
        lost_done = [listed[x]["finished_at"] for x in lost if listed[x]["finished_at"]]
        computed = Counter(int(line) for line in self.log.read_text().split())
        twice = {x for x, n in computed.items() if n > 1}
        self.out.update(
            submitted=len(sub.ids),
            statuses=statuses(listed),
            lost_attempts=len(lost),
            first_done_after_restart_s=min(after) - t_epoch if after else None,
            first_reclaimed_done_s=min(lost_done) - t_epoch if lost_done else None,
            last_reclaimed_done_s=max(lost_done) - t_epoch if lost_done else None,
            all_done_s=max(finished) - t_epoch,
            wrong_results=wrong,
            never_computed=[x for x in range(len(sub.ids)) if computed[x] == 0],
            computed_twice=len(twice),
            computed_twice_without_lost_attempt=sorted(twice - lost),
            attempts=dict(Counter(j["attempts"] for j in listed)),
            **{f"restart_{k}": v for k, v in latencies(listed).items()},
        )
        o = self.out
        o["exactly_once"] = (
            o["statuses"] == {"succeeded": len(sub.ids)}
            and not wrong
            and not o["never_computed"]
            and not o["computed_twice_without_lost_attempt"]
        )

    def measure(self) -> dict[str, Any]:
        self.out = {"run": self.run, "jobs": self.args.recovery_jobs}
        sub = self.first_life()
        self.second_life(sub)
        return self.out


def measure_recovery(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for run in range(args.runs):
        cpu = CpuMeter(os.getpid())
        r = RecoveryRun(run, work, args).measure()
        # The servers are gone by now: "ours" is this process and the children it reaped (the
        # killed gateway's instances were not reaped by it, so they count as "other" here).
        r["cpu"] = cpu.stop()
        runs.append(r)
        console.print(
            f"  run {run + 1}/{args.runs}: killed with {r['running_before_kill']} running,"
            f" live {r['live_s']:.2f} s, first reclaimed done {_s(r['first_reclaimed_done_s'])},"
            f" all done {r['all_done_s']:.2f} s, exactly once: {r['exactly_once']}",
            highlight=False,
        )
    keys = ("live_s", "ready_s", "first_done_after_restart_s", "first_reclaimed_done_s",
            "last_reclaimed_done_s", "all_done_s", "fresh_live_s", "fresh_ready_s",
            "lost_attempts", "running_before_kill", "computed_twice", "killed_after_s")  # fmt: skip
    return {
        "model": {"name": SLOW, "sleep_ms": args.slow_ms, "max_instances": 2, "concurrency": 2},
        "runs": runs,
        "median": {k: median_of(runs, k) for k in keys},
        "exactly_once_all_runs": all(r["exactly_once"] for r in runs),
        "survivors": sum(len(r["kill"]["survivors"]) for r in runs),
    }


# -- report ----------------------------------------------------------------------------------


def _s(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.2f} s"


def _n(x: float, digits: int = 0) -> str:
    return "-" if math.isnan(x) else f"{x:,.{digits}f}"


def throughput_table(result: dict[str, Any]) -> Table:
    s = result["settings"]
    table = Table(
        title=f"iris jobs: {s['jobs']} per burst, {s['submitters']} submitters, median of"
        f" {s['runs']} runs (latency ms)"
    )
    head = ["deployment", "jobs/s", "acks/s", "queue p50", "queue p95", "e2e p50", "e2e p95",
            "trickle queue p50/p95", "left at last ack", "inst", "gateway CPU ms/job",
            "other cores"]  # fmt: skip
    for i, col in enumerate(head):
        table.add_column(col, justify="left" if i == 0 else "right")
    for c in result["throughput"]["configs"].values():
        m = c["median"]
        table.add_row(
            f"{c['model']}: {c['capacity_in_flight']} in flight",
            _n(m["jobs_per_s"]), _n(m["acks_per_s"]), _n(m["queue_p50_ms"], 1),
            _n(m["queue_p95_ms"], 1), _n(m["e2e_p50_ms"], 1), _n(m["e2e_p95_ms"], 1),
            f"{_n(m.get('trickle_queue_p50_ms', math.nan), 1)}/"
            f"{_n(m.get('trickle_queue_p95_ms', math.nan), 1)}",
            _n(m["unfinished_at_last_ack"]), _n(m["peak_instances"]),
            _n(m["gateway_cpu_ms_per_job"], 2), _n(m["other_cores"], 2),
        )  # fmt: skip
    table.caption = (
        "jobs/s: first submit -> last finished_at; acks/s: first submit -> last 202; queue:"
        " created_at -> started_at; e2e: created_at -> finished_at; trickle:"
        f" {s['trickle_jobs']} jobs at {s['trickle_rate']:g}/s; left at last ack: jobs not"
        " finished when the last 202 came (small: the runner kept up, jobs/s is the submit"
        " rate); inst: peak instances seen; gateway CPU: the gateway process alone"
    )
    return table


def recovery_table(result: dict[str, Any]) -> Table:
    rec = result["recovery"]
    s = result["settings"]
    table = Table(
        title=f"recovery after SIGKILL: {s['recovery_jobs']} jobs of a {s['slow_ms']:g} ms model,"
        f" killed at {s['kill_at']:.0%} (seconds from the restart command)"
    )
    head = ["run", "running at kill", "live", "ready", "first reclaimed done",
            "all reclaimed done", "all done", "succeeded", "dead", "run twice",
            "exactly once"]  # fmt: skip
    for i, col in enumerate(head):
        table.add_column(col, justify="left" if i == 0 else "right")
    for r in rec["runs"]:
        st = r["statuses"]
        table.add_row(
            str(r["run"] + 1), f"{r['running_before_kill']} ({r['lost_attempts']} lost)",
            _s(r["live_s"]), _s(r["ready_s"]), _s(r["first_reclaimed_done_s"]),
            _s(r["last_reclaimed_done_s"]), _s(r["all_done_s"]),
            f"{st.get('succeeded', 0)}/{r['submitted']}", str(st.get("dead", 0)),
            str(r["computed_twice"]), "yes" if r["exactly_once"] else "[red]NO[/red]",
        )  # fmt: skip
    m = rec["median"]
    table.add_row(
        "median", f"{_n(m['running_before_kill'])} ({_n(m['lost_attempts'])} lost)",
        _s(m["live_s"]), _s(m["ready_s"]), _s(m["first_reclaimed_done_s"]),
        _s(m["last_reclaimed_done_s"]), _s(m["all_done_s"]), "", "", _n(m["computed_twice"]), "",
    )  # fmt: skip
    table.caption = (
        "running at kill: jobs listed running just before the SIGKILL (lost: jobs whose attempt"
        " the restart recorded as lost); run twice: x computed twice by the model (at least"
        f" once delivery); instance processes outliving the gateway: {rec['survivors']}; the same"
        f" start on an empty state dir: live {_s(rec['median']['fresh_live_s'])}, ready"
        f" {_s(rec['median']['fresh_ready_s'])} (median)"
    )
    return table


def report(result: dict[str, Any]) -> None:
    m = result["machine"]
    console.print(
        f"\n[bold]machine[/bold]: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']},"
        f" onnxruntime {m['packages']['onnxruntime']}, commit {result['git']['commit'][:7]}"
        f"{' (src modified)' if result['git']['src_dirty'] else ''}, load average"
        f" {m['loadavg_at_start'][0]:.2f} at the start, {m['loadavg_at_end'][0]:.2f} at the end",
        highlight=False,
        soft_wrap=True,
    )
    out = console if console.is_terminal else Console(width=180)
    if "throughput" in result:
        out.print(throughput_table(result))
    if "recovery" in result:
        out.print(recovery_table(result))
    for problem in result["problems"]:
        console.print(f"[red]{problem}[/red]", highlight=False)


def problems(result: dict[str, Any]) -> list[str]:
    found = []
    for c in result.get("throughput", {}).get("configs", {}).values():
        if c["not_succeeded"]:
            found.append(f"{c['model']}: {c['not_succeeded']} jobs did not succeed")
    rec = result.get("recovery")
    if rec:
        for r in rec["runs"]:
            if not r["exactly_once"]:
                found.append(
                    f"recovery run {r['run'] + 1}: not exactly once: statuses {r['statuses']},"
                    f" wrong results {r['wrong_results'][:10]}, never computed"
                    f" {r['never_computed'][:10]}, computed twice without a lost attempt"
                    f" {r['computed_twice_without_lost_attempt'][:10]}"
                )
            if not r["lost_attempts"]:
                found.append(
                    f"recovery run {r['run'] + 1}: no job lost an attempt to the kill, so nothing"
                    " was reclaimed (raise --recovery-jobs or --slow-ms, or lower --kill-at)"
                )
            if r["kill"]["survivors"]:
                found.append(
                    f"recovery run {r['run'] + 1}: outlived the gateway: {r['kill']['survivors']}"
                )
    return found


# -- main ------------------------------------------------------------------------------------

QUICK = {"jobs": 100, "runs": 1, "trickle_jobs": 10, "recovery_jobs": 60}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=500, help="jobs per burst [500]")
    p.add_argument("--runs", type=int, default=3, help="runs of every measurement [3]")
    p.add_argument("--max-instances", type=int, default=4, help="the 'max' deployment's [4]")
    p.add_argument("--concurrency", type=int, default=4, help="in flight per instance [4]")
    p.add_argument("--max-batch-size", type=int, default=1, help="iris batching [1: off]")
    p.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="min instances 0 (the autoscaler decides), not pinned at the max",
    )
    p.add_argument("--submitters", type=int, default=8, help="concurrent submit connections [8]")
    p.add_argument("--trickle-jobs", type=int, default=30, help="paced jobs per run [30; 0: none]")
    p.add_argument("--trickle-rate", type=float, default=20.0, help="paced jobs per second [20]")
    p.add_argument("--recovery-jobs", type=int, default=200, help="jobs per kill run [200]")
    p.add_argument("--slow-ms", type=float, default=50.0, help="the slow model's sleep [50]")
    p.add_argument(
        "--kill-at",
        type=float,
        default=0.3,
        help="kill once this fraction of the jobs (submission order) is done [0.3]",
    )
    p.add_argument("--poll", type=float, default=0.025, help="completion poll interval s [0.025]")
    p.add_argument("--timeout", type=float, default=120.0, help="longest wait for anything [120]")
    p.add_argument("--skip-throughput", action="store_true", help="only the recovery runs")
    p.add_argument("--skip-recovery", action="store_true", help="only the throughput runs")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a ~30 s smoke run: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()),
    )
    p.add_argument(
        "--out", type=Path, default=None, help="[bench/results/jobs.json; --quick: jobs-quick.json]"
    )
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    if args.out is None:
        args.out = BENCH_DIR / "results" / ("jobs-quick.json" if args.quick else "jobs.json")
    if min(args.jobs, args.runs, args.max_instances, args.concurrency, args.max_batch_size,
           args.submitters, args.recovery_jobs) < 1 or args.trickle_jobs < 0:  # fmt: skip
        p.error("counts must be >= 1 (--trickle-jobs >= 0)")
    if not 0 < args.kill_at < 1 or args.trickle_rate <= 0 or args.slow_ms <= 0:
        p.error("--kill-at must be in (0, 1), --trickle-rate and --slow-ms > 0")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    ensure_model()
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    result: dict[str, Any] = {
        "benchmark": "jobs",
        "created": utc_now(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "git": git_info(),
        "model": {
            "name": "iris",
            "path": str(IRIS.relative_to(ROOT)),
            "bytes": IRIS.stat().st_size,
        },
        "request_body": json.loads(BODY),
        "settings": settings,
    }
    with tempfile.TemporaryDirectory(prefix="zeroserve-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_throughput:
            result["throughput"] = phase("throughput", lambda: measure_throughput(work, args))
        if not args.skip_recovery:
            result["recovery"] = phase(
                "recovery after kill -9", lambda: measure_recovery(work, args)
            )
    result["problems"] = problems(result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def finish(result: dict[str, Any]) -> int:
        report(result)
        write_json(args.out, no_nan(result), allow_nan=False)
        console.print(f"wrote {args.out}")
        return 2 if result["problems"] else 0

    return run_bench(lambda: run(args), finish)


if __name__ == "__main__":
    sys.exit(main())
