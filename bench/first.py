"""First benchmark: cold start from zero and warm overhead, iris ONNX.

    .venv/bin/python bench/first.py [--trials N] [--requests N] [--out bench/results/first.json]

Starts everything it measures on free 127.0.0.1 ports with temporary state dirs, and stops it:

(a) cold start: `--trials` times, wait until the model is at zero instances (it is deployed
    with a short idle timeout), then time one V2 request end to end from the client. The
    platform's own account of each start (the `started ... in X ms (fetch F, load L, PATH)`
    log line, and the `zeroserve_cold_start_seconds` histogram in /metrics) gives the breakdown.
(b) warm latency at concurrency 1: `--requests` sequential requests against a warm instance,
    and the same against a bare uvicorn + Starlette app running onnxruntime in its handler
    (bench/baseline_app.py), alternating in `--rounds` rounds over one keep-alive httpx.Client.
    The figures reported are medians across rounds.

Prints a table and writes JSON (machine, settings, every trial, summaries).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
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
    LogTail,
    Served,
    console,
    deploy,
    ensure_model,
    explained,
    free_port,
    git_info,
    histogram_totals,
    machine_info,
    phase,
    run_bench,
    serve,
    summarize,
    utc_now,
    wait_for_zero,
    write_json,
    zeroserve_up,
)  # fmt: skip
from rich.table import Table

MODEL = "iris"
# What docs/DESIGN.md asks of the platform, for the JSON and the table.
TARGETS = {
    "cold_start_p95_ms_fork_server": 50.0,
    "cold_start_p95_ms_snapshot": 15.0,
    "warm_p50_overhead_ms": 1.0,
}


@contextlib.contextmanager
def baseline_up(workdir: Path) -> Iterator[Served]:
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), "baseline_app:app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    env = {"ZEROSERVE_BASELINE_MODEL": str(IRIS), "ZEROSERVE_BASELINE_NAME": MODEL}
    with serve("baseline", argv, port, workdir, ready_path="/v2/health/ready", env=env) as server:
        yield server


# -- (a) cold start --------------------------------------------------------------------------


@dataclass
class ColdTrial:
    trial: int
    e2e_ms: float  # client: request sent -> response read
    gateway_ms: float  # zeroserve_request_duration_seconds of this request (gateway side)
    cold_header: str
    to_zero_s: float | None  # previous trial's answer -> zero instances seen (None: first)
    instance_id: str
    start_total_ms: float
    fetch_ms: float
    load_ms: float
    spawn_and_imports_ms: float  # start total - fetch - load: interpreter start and imports
    gateway_minus_start_ms: float  # routing, queueing, dispatch, first predict, encoding
    e2e_minus_gateway_ms: float  # HTTP, uvicorn and the client


COLD_FIELDS = (
    "e2e_ms", "gateway_ms", "start_total_ms", "spawn_and_imports_ms", "fetch_ms", "load_ms",
    "gateway_minus_start_ms", "e2e_minus_gateway_ms",
)  # fmt: skip
REQUEST_SECONDS = "zeroserve_request_duration_seconds"
COLD_START_SECONDS = "zeroserve_cold_start_seconds"


def scrape(client: httpx.Client, server: Served, name: str) -> dict[str, float]:
    r = client.get(f"{server.base_url}/metrics")
    r.raise_for_status()
    return histogram_totals(r.text, name, MODEL)


@dataclass
class ColdRun:
    client: httpx.Client
    server: Served
    log: LogTail
    settle_s: float
    last_answer: float | None = None

    def trial(self, i: int) -> ColdTrial:
        wait_for_zero(self.client, self.server.base_url, MODEL, timeout_s=60.0)
        to_zero = time.perf_counter() - self.last_answer if self.last_answer else None
        time.sleep(self.settle_s)
        self.log.starts(MODEL)  # discard anything before this trial
        before = scrape(self.client, self.server, REQUEST_SECONDS)
        url = f"{self.server.base_url}/v2/models/{MODEL}/infer"
        t0 = time.perf_counter()
        r = self.client.post(url, content=BODY, headers=HEADERS)
        self.last_answer = time.perf_counter()
        e2e_ms = (self.last_answer - t0) * 1e3
        if r.status_code != 200:
            raise BenchError(f"cold request {i} got {r.status_code}: {r.text[:300]}")
        after = scrape(self.client, self.server, REQUEST_SECONDS)
        if after["count"] - before["count"] != 1:
            raise BenchError(f"cold trial {i}: {REQUEST_SECONDS} did not count one request")
        gateway_ms = (after["sum"] - before["sum"]) * 1e3
        starts = self.log.wait_starts(MODEL)
        if len(starts) != 1:
            raise BenchError(f"cold trial {i}: expected one 'started' log line, got {starts}")
        s = starts[0]
        return ColdTrial(
            trial=i,
            e2e_ms=e2e_ms,
            gateway_ms=gateway_ms,
            cold_header=r.headers.get("x-zeroserve-cold-start", ""),
            to_zero_s=to_zero,
            instance_id=s["instance_id"],
            start_total_ms=s["total_ms"],
            fetch_ms=s["fetch_ms"],
            load_ms=s["load_ms"],
            spawn_and_imports_ms=s["total_ms"] - s["fetch_ms"] - s["load_ms"],
            gateway_minus_start_ms=gateway_ms - s["total_ms"],
            e2e_minus_gateway_ms=e2e_ms - gateway_ms,
        )


def measure_cold(client: httpx.Client, server: Served, args: argparse.Namespace) -> dict[str, Any]:
    deploy(server, MODEL, args.idle_timeout)
    log = LogTail(server.stderr_path)
    log.skip_to_end()
    before = scrape(client, server, COLD_START_SECONDS)
    run = ColdRun(client, server, log, args.settle)
    trials: list[ColdTrial] = []
    for i in range(args.trials):
        t = run.trial(i)
        trials.append(t)
        console.print(
            f"  cold {i + 1:>3}/{args.trials}: {t.e2e_ms:7.1f} ms end to end,"
            f" start {t.start_total_ms:5.0f} ms (fetch {t.fetch_ms:.0f}, load {t.load_ms:.0f})",
            highlight=False,
        )
    after = scrape(client, server, COLD_START_SECONDS)
    count = after["count"] - before["count"]
    total = after["sum"] - before["sum"]
    return {
        "idle_timeout_s": args.idle_timeout,
        "settle_s": args.settle,
        "trials": [asdict(t) for t in trials],
        "summary": {f: summarize([getattr(t, f) for t in trials], (50, 95)) for f in COLD_FIELDS},
        "not_cold": sum(1 for t in trials if t.cold_header != "true"),
        "to_zero_s": summarize([t.to_zero_s for t in trials if t.to_zero_s is not None], (50, 95)),
        "metrics": {
            "histogram": COLD_START_SECONDS,
            "count": count,
            "sum_s": total,
            "mean_ms": total / count * 1e3 if count else float("nan"),
        },
    }


def start_path_anatomy(runs: int) -> dict[str, Any]:
    """Wall time of the pieces of today's start path, each in a fresh interpreter."""
    steps = {
        "interpreter": "pass",
        "worker_imports": "import zeroserve.instances.worker",
        "worker_imports_and_onnxruntime": "import zeroserve.instances.worker, onnxruntime",
    }
    out: dict[str, Any] = {}
    for key, code in steps.items():
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
            times.append((time.perf_counter() - t0) * 1e3)
        out[key] = {"median_ms": statistics.median(times), "runs_ms": times}
    return out


# -- (b) warm latency ------------------------------------------------------------------------


def timed_requests(client: httpx.Client, url: str, n: int) -> list[float]:
    latencies = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.post(url, content=BODY, headers=HEADERS)
        latencies.append((time.perf_counter() - t0) * 1e3)
        if r.status_code != 200:
            raise BenchError(f"{url} answered {r.status_code}: {r.text[:300]}")
    return latencies


def measure_warm(
    client: httpx.Client, zs: Served, bare: Served, args: argparse.Namespace
) -> dict[str, Any]:
    # Remove the cold-start deployment (its pool ticks every idle_timeout/10 s) and deploy
    # afresh with a long idle timeout, so the instance stays warm and the tick is rare.
    r = client.delete(f"{zs.base_url}/api/models/{MODEL}")
    if r.status_code not in (200, 404):
        raise BenchError(f"DELETE /api/models/{MODEL} answered {r.status_code}: {r.text[:300]}")
    deploy(zs, MODEL, 3600.0)
    urls = {
        "bare": f"{bare.base_url}/v2/models/{MODEL}/infer",
        "zeroserve": f"{zs.base_url}/v2/models/{MODEL}/infer",
    }
    rounds: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        order = ["bare", "zeroserve"] if rnd % 2 == 0 else ["zeroserve", "bare"]
        result: dict[str, Any] = {"round": rnd, "order": order}
        for target in order:
            timed_requests(client, urls[target], args.warmup)
            before = scrape(client, zs, REQUEST_SECONDS)
            result[target] = summarize(timed_requests(client, urls[target], args.requests))
            if target == "zeroserve":
                after = scrape(client, zs, REQUEST_SECONDS)
                n = after["count"] - before["count"]
                result["zeroserve_gateway_mean_ms"] = (after["sum"] - before["sum"]) / n * 1e3
        rounds.append(result)
        console.print(
            f"  warm round {rnd + 1}/{args.rounds}: p50 bare {result['bare']['p50']:.3f} ms,"
            f" zeroserve {result['zeroserve']['p50']:.3f} ms",
            highlight=False,
        )
    median = {
        t: {k: statistics.median(r[t][k] for r in rounds) for k in ("p50", "p95", "p99", "mean")}
        for t in ("bare", "zeroserve")
    }
    median["zeroserve"]["gateway_mean"] = statistics.median(
        r["zeroserve_gateway_mean_ms"] for r in rounds
    )
    bare_p50, zs_p50 = median["bare"]["p50"], median["zeroserve"]["p50"]
    return {
        "requests_per_round": args.requests,
        "warmup_per_round": args.warmup,
        "rounds": rounds,
        "median": median,
        "p50_diff_ms": zs_p50 - bare_p50,
        "p50_ratio": zs_p50 / bare_p50,
        "p50_diff_ms_per_round": [r["zeroserve"]["p50"] - r["bare"]["p50"] for r in rounds],
    }


# -- report ----------------------------------------------------------------------------------


def _ms(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def cold_table(cold: dict[str, Any]) -> Table:
    n = len(cold["trials"])
    table = Table(title=f"cold start from zero, iris ONNX, {n} trials (ms)")
    for col in ("", "p50", "p95", "max", "mean"):
        table.add_column(col, justify="left" if not col else "right")
    labels = {
        "e2e_ms": "first request, end to end (client)",
        "gateway_ms": "  in the gateway (/metrics request duration)",
        "start_total_ms": "    instance start (platform log)",
        "spawn_and_imports_ms": "      fork or spawn + imports",
        "fetch_ms": "      fetch artifact",
        "load_ms": "      load model (incl. onnxruntime import)",
        "gateway_minus_start_ms": "    rest: route, queue, dispatch, predict",
        "e2e_minus_gateway_ms": "  HTTP + uvicorn + client",
    }
    for key, label in labels.items():
        s = cold["summary"][key]
        table.add_row(label, _ms(s["p50"]), _ms(s["p95"]), _ms(s["max"]), _ms(s["mean"]))
    m = cold["metrics"]
    table.caption = (
        f"/metrics {m['histogram']}: count {m['count']:g}, mean {m['mean_ms']:.1f} ms"
        f" · back to zero {cold['to_zero_s']['p50']:.2f} s after the answer (p50)"
        f" · target p95 ≤ {TARGETS['cold_start_p95_ms_fork_server']:g} ms (fork server)"
    )
    return table


def warm_table(warm: dict[str, Any]) -> Table:
    rounds = len(warm["rounds"])
    table = Table(
        title=f"warm latency, concurrency 1, {warm['requests_per_round']} requests x {rounds}"
        " rounds (ms, median of rounds)"
    )
    for col in ("", "p50", "p95", "p99", "mean"):
        table.add_column(col, justify="left" if not col else "right")
    med = warm["median"]
    for target, label in (
        ("bare", "bare uvicorn + Starlette + onnxruntime"),
        ("zeroserve", "zeroserve"),
    ):
        s = med[target]
        table.add_row(label, *(f"{s[k]:.3f}" for k in ("p50", "p95", "p99", "mean")))
    diff = {k: med["zeroserve"][k] - med["bare"][k] for k in ("p50", "p95", "p99", "mean")}
    table.add_row("zeroserve - bare", *(f"{diff[k]:+.3f}" for k in ("p50", "p95", "p99", "mean")))
    ratio = {k: med["zeroserve"][k] / med["bare"][k] for k in ("p50", "p95", "p99", "mean")}
    table.add_row("zeroserve / bare", *(f"{ratio[k]:.2f}x" for k in ("p50", "p95", "p99", "mean")))
    per_round = ", ".join(f"{d:+.3f}" for d in warm["p50_diff_ms_per_round"])
    table.caption = (
        f"p50 difference per round: {per_round} ms · zeroserve gateway-side mean"
        f" (/metrics request duration) {med['zeroserve']['gateway_mean']:.3f} ms"
        f" · target p50 ≤ +{TARGETS['warm_p50_overhead_ms']:g} ms"
    )
    return table


def anatomy_table(anatomy: dict[str, Any]) -> Table:
    table = Table(title="start path pieces, fresh interpreter each (ms, median)")
    table.add_column("python -c ...")
    table.add_column("wall", justify="right")
    for key, value in anatomy.items():
        table.add_row(key, f"{value['median_ms']:.0f}")
    return table


def report(result: dict[str, Any]) -> None:
    m = result["machine"]
    console.print(
        f"\n[bold]machine[/bold]: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']},"
        f" onnxruntime {m['packages']['onnxruntime']}, uvicorn {m['packages']['uvicorn']}",
        highlight=False,
    )
    if "cold_start" in result:
        console.print(cold_table(result["cold_start"]))
    if "anatomy" in result:
        console.print(anatomy_table(result["anatomy"]))
    if "warm" in result:
        console.print(warm_table(result["warm"]))


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=20, help="cold-start trials [20]")
    p.add_argument("--requests", type=int, default=2000, help="warm requests per round [2000]")
    p.add_argument("--rounds", type=int, default=3, help="alternating warm rounds [3]")
    p.add_argument("--warmup", type=int, default=200, help="warm-up requests per round [200]")
    p.add_argument("--idle-timeout", type=float, default=0.5, help="cold model idle timeout [0.5]")
    p.add_argument("--settle", type=float, default=0.2, help="sleep at zero before a trial [0.2]")
    p.add_argument("--anatomy-runs", type=int, default=5, help="runs per start-path piece [5]")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "first.json")
    p.add_argument("--skip-cold", action="store_true", help="only the warm comparison")
    p.add_argument("--skip-warm", action="store_true", help="only the cold starts")
    args = p.parse_args(argv)
    if args.trials < 1 or args.requests < 1 or args.rounds < 1 or args.warmup < 0:
        p.error("--trials, --requests and --rounds must be >= 1, --warmup >= 0")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    ensure_model()
    result: dict[str, Any] = {
        "benchmark": "first",
        "created": utc_now(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "git": git_info(),
        "model": {"name": MODEL, "path": str(IRIS.relative_to(ROOT)), "bytes": IRIS.stat().st_size},
        "request_body": json.loads(BODY),
        "targets": TARGETS,
    }
    with (
        tempfile.TemporaryDirectory(prefix="zeroserve-bench-") as tmp,
        httpx.Client(timeout=120.0, trust_env=False) as client,  # no proxy for 127.0.0.1
    ):
        work = Path(tmp)
        with zeroserve_up(work) as zs, explained(zs):
            if not args.skip_cold:
                result["cold_start"] = phase("cold start", lambda: measure_cold(client, zs, args))
                result["anatomy"] = phase(
                    "start path pieces", lambda: start_path_anatomy(args.anatomy_runs)
                )
            if not args.skip_warm:
                with baseline_up(work) as bare:
                    result["warm"] = phase(
                        "warm latency", lambda: measure_warm(client, zs, bare, args)
                    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def finish(result: dict[str, Any]) -> int:
        report(result)
        write_json(args.out, result)
        console.print(f"wrote {args.out}")
        return 0

    return run_bench(lambda: run(args), finish)


if __name__ == "__main__":
    sys.exit(main())
