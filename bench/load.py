"""Throughput, overload and a burst, iris ONNX, with Debian's `wrk` as the load generator.

    .venv/bin/python bench/load.py [--model iris|minilm] [--duration S]
        [--concurrency 1,8,32,128] [--out bench/results/load.json] [--plot docs/burst.png]

--model minilm measures (a) only, for the MiniLM model folder (examples/minilm/build/minilm,
Python runtime) at concurrency 1,8,32: one ten-word sentence as V2 `text` BYTES [1], against
bench/baseline_minilm.py (the folder's own model.py, predict per request in the handler), and
zeroserve with --max-instances 2 --concurrency 2, batching off and on (--max-batch-size 32
--max-batch-delay-ms 5); it writes bench/results/load-minilm.json.

Starts everything it measures on free 127.0.0.1 ports with temporary state dirs, and stops it.
wrk (installed with apt-get if missing) runs on the same 2 cores as the servers it loads, with
a Lua script that POSTs one iris flower as KServe V2 JSON (FP32 [1, 4]) and prints its summary
as JSON (requests, errors, latency percentiles).

(a) Throughput. For each concurrency (wrk -c N, -t 1 for N = 1 else -t 2, `--duration` s
    each after a 2 s warm-up at the same concurrency), in this order per concurrency:
      bare       bench/baseline_app.py: uvicorn + Starlette, onnxruntime in the handler
      zs-off     zeroserve, batching off   (--max-instances 2 --concurrency 4)
      zs-batch   zeroserve, batching on    (--max-instances 2 --concurrency 4
                                            --max-batch-size 32 --max-batch-delay-ms 2)
    req/s, p50/p95/p99/max latency (wrk's, from its --latency histogram), socket errors and
    non-2xx, the ratio to the bare app at the same concurrency, the mean batch size (from
    zeroserve_batch_size in /metrics) and the instances afterwards.
(b) Overload. 512 connections against zs-batch (max queue 1024, the default), and against
    the same settings with --max-queue 32, `--duration` s each, wrk --timeout 10s: every
    status counted (a Lua response() hook), Retry-After counted on 429/503, timeouts and
    socket errors, the gateway's RSS before and after.
(c) Burst. A fresh `zeroserve up`; iris deployed with --idle-timeout 2 (other settings
    default: --max-instances 4 --concurrency 4). At zero, then 0 -> 200 connections for
    `--burst-duration` s (wrk -c 200) -> 0. GET /api/models/iris and /metrics are sampled every
    0.25 s (instances, starting, desired, panic), a one-connection Python probe times one
    request after another while wrk runs (latency over time), and after wrk ends the command
    polls until the model is at zero. Reports peak instances, cold starts
    (zeroserve_cold_starts_total), time back to zero after the last answer, and a PNG plot.

Prints tables, writes JSON. Exits 0, or 1 if the run could not be made.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
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
    MINILM,
    MINILM_LOAD_BODY,
    ROOT,
    BenchError,
    CpuMeter,
    Served,
    console,
    ensure_minilm,
    ensure_model,
    explained,
    free_port,
    git_info,
    histogram_totals,
    machine_info,
    model_status,
    run_bench,
    serve,
    utc_now,
    wait_for_zero,
    write_json,
    zeroserve_command,
    zeroserve_up,
)  # fmt: skip
from rich.table import Table

MODEL = "iris"
# What the autoscaling/batching issue asks, against the bare app in the same run.
TARGETS = {
    "batch_conc32_ratio_min": 1.0,
    "batch_conc32_p99_ms_max": 50.0,
    "overload_allowed_statuses": [200, 429, 503],
    "overload_timeouts_max": 0,
    "back_to_zero_s_max_over_idle_timeout": 2.0,
}
INSTANCE_FLAGS = ["--max-instances", "2", "--concurrency", "4"]
BATCH_FLAGS = ["--max-batch-size", "32", "--max-batch-delay-ms", "2"]
TARGETS_ZS = {
    # name: (model name on the platform, extra deploy flags)
    "zs-off": ("iris-off", [*INSTANCE_FLAGS]),
    "zs-batch": ("iris-batch", [*INSTANCE_FLAGS, *BATCH_FLAGS]),
}
OVERLOAD_MODELS = {
    "zs-batch, max queue 1024 (default)": ("iris-batch", None),
    "zs-batch, max queue 32": ("iris-q32", [*INSTANCE_FLAGS, *BATCH_FLAGS, "--max-queue", "32"]),
}
LABELS = {
    "bare": "bare uvicorn + Starlette + onnxruntime",
    "zs-off": "zeroserve, batching off",
    "zs-batch": "zeroserve, batching on",
}


@dataclass(frozen=True)
class Profile:
    """What `--model` picks for the throughput part: the artifact, the request, the bare app,
    the two zeroserve deployments and the concurrency-32 target."""

    model: str  # the bare app's model name (also the burst deployment's, for iris)
    title: str
    artifact: Path
    body: bytes
    baseline_app: str  # module:app under bench/
    baseline_env: dict[str, str]
    deployments: dict[str, tuple[str, list[str]]]
    concurrency: str
    ratio_min: float
    p99_ms_max: float | None
    caption: str
    labels: dict[str, str] = field(default_factory=lambda: dict(LABELS))


MINILM_INSTANCE_FLAGS = ["--max-instances", "2", "--concurrency", "2"]
MINILM_BATCH_FLAGS = ["--max-batch-size", "32", "--max-batch-delay-ms", "5"]
PROFILES = {
    "iris": Profile(
        model=MODEL, title="iris ONNX", artifact=IRIS, body=BODY,
        baseline_app="baseline_app:app",
        baseline_env={"ZEROSERVE_BASELINE_MODEL": str(IRIS), "ZEROSERVE_BASELINE_NAME": MODEL},
        deployments=TARGETS_ZS, concurrency="1,8,32,128",
        ratio_min=TARGETS["batch_conc32_ratio_min"],
        p99_ms_max=TARGETS["batch_conc32_p99_ms_max"],
        caption="wrk runs on the same 2 cores as the servers. zeroserve: --max-instances 2"
        " --concurrency 4; batching on adds --max-batch-size 32 --max-batch-delay-ms 2.",
    ),
    "minilm": Profile(
        model="minilm", title="MiniLM (Python runtime, model folder)", artifact=MINILM,
        body=MINILM_LOAD_BODY, baseline_app="baseline_minilm:app",
        baseline_env={"ZEROSERVE_BASELINE_MODEL": str(MINILM), "ZEROSERVE_BASELINE_NAME": "minilm"},
        deployments={
            "zs-off": ("minilm-off", [*MINILM_INSTANCE_FLAGS]),
            "zs-batch": ("minilm-batch", [*MINILM_INSTANCE_FLAGS, *MINILM_BATCH_FLAGS]),
        },
        concurrency="1,8,32", ratio_min=2.0, p99_ms_max=None,
        caption="wrk runs on the same 2 cores as the servers. zeroserve: --max-instances 2"
        " --concurrency 2; batching on adds --max-batch-size 32 --max-batch-delay-ms 5.",
        labels={**LABELS, "bare": "bare uvicorn + Starlette + MiniLM.predict"},
    ),
}  # fmt: skip

# -- wrk -------------------------------------------------------------------------------------

_LUA = r"""
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
%(count)s
function done(summary, latency, requests)
  local p = {}
  for _, q in ipairs({50, 75, 90, 95, 99, 99.9}) do p[tostring(q)] = latency:percentile(q) end
  local e = summary.errors
  local out = string.format(
    '{"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"lat_min_us":%%d,"lat_max_us":%%d,"lat_mean_us":%%f,' ..
    '"p50":%%d,"p75":%%d,"p90":%%d,"p95":%%d,"p99":%%d,"p99.9":%%d',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.min, latency.max, latency.mean,
    p["50"], p["75"], p["90"], p["95"], p["99"], p["99.9"])
  out = out .. %(codes)s .. "}"
  io.write("WRKJSON " .. out .. "\n")
end
"""
# Counting statuses costs wrk a Lua call per response: only where the statuses matter.
_COUNT = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) codes = {}; retry = 0 end
function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
  if (status == 429 or status == 503) and (headers["retry-after"] or headers["Retry-After"]) then
    retry = retry + 1
  end
end
local function codes_json()
  local all, r = {}, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("codes")) do all[k] = (all[k] or 0) + v end
    r = r + t:get("retry")
  end
  local parts = {}
  for k, v in pairs(all) do table.insert(parts, string.format('"%d":%d', k, v)) end
  return ',"codes":{' .. table.concat(parts, ",") .. '},"retry_after":' .. r
end
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    console.print("[dim]installing wrk (apt-get install -y wrk)[/dim]")
    install = ["apt-get", "install", "-y", "wrk"]
    if subprocess.run(install, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, check=False)
        done = subprocess.run(install, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"apt-get install -y wrk failed:\n{done.stderr[-1500:]}")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk is not on PATH after apt-get install")
    return found


def write_lua(workdir: Path, request: bytes = BODY) -> dict[str, Path]:
    body = request.decode()
    plain = _LUA % {"body": body, "count": "", "codes": '""'}
    counting = _LUA % {"body": body, "count": _COUNT, "codes": "codes_json()"}
    paths = {"plain": workdir / "post.lua", "count": workdir / "post_count.lua"}
    paths["plain"].write_text(plain)
    paths["count"].write_text(counting)
    return paths


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).splitlines()[0].strip()


def run_wrk(
    wrk: str, url: str, conns: int, duration_s: float, lua: Path, *, timeout_s: float = 2.0,
) -> dict[str, Any]:  # fmt: skip
    threads = 1 if conns == 1 else 2
    argv = [
        wrk, "-t", str(threads), "-c", str(conns), "-d", f"{duration_s:g}s", "--latency",
        "--timeout", f"{timeout_s:g}s", "-s", str(lua), url,
    ]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )  # fmt: skip
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line[len("WRKJSON ") :])
    secs = raw["duration_us"] / 1e6
    return {
        "argv": [*argv[:-3], lua.name, url],
        "connections": conns,
        "threads": threads,
        "requests": raw["requests"],
        "duration_s": secs,
        "rps": raw["requests"] / secs,
        "latency_ms": {
            "p50": raw["p50"] / 1e3,
            "p75": raw["p75"] / 1e3,
            "p90": raw["p90"] / 1e3,
            "p95": raw["p95"] / 1e3,
            "p99": raw["p99"] / 1e3,
            "p99.9": raw["p99.9"] / 1e3,
            "min": raw["lat_min_us"] / 1e3,
            "max": raw["lat_max_us"] / 1e3,
            "mean": raw["lat_mean_us"] / 1e3,
        },
        "errors": {k: raw[k] for k in ("connect", "read", "write", "timeout")},
        "non_2xx_3xx": raw["status"],
        "codes": raw.get("codes"),
        "retry_after": raw.get("retry_after"),
        "stdout": done.stdout,
    }


# -- servers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def baseline_up(workdir: Path, prof: Profile = PROFILES["iris"]) -> Iterator[Served]:
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), prof.baseline_app,
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with serve(
        "baseline", argv, port, workdir, ready_path="/v2/health/ready", env=prof.baseline_env
    ) as server:
        yield server


def deploy_with(
    server: Served, name: str, flags: Sequence[str], artifact: Path = IRIS
) -> list[str]:  # fmt: skip
    argv = [*zeroserve_command(), "deploy", name, str(artifact), "--url", server.base_url, *flags]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise BenchError(f"zeroserve deploy {name} failed ({done.returncode}):\n{done.stderr}")
    shown = artifact.relative_to(ROOT) if artifact.is_relative_to(ROOT) else artifact
    return ["zeroserve", "deploy", name, str(shown), *flags]


def metrics_text(client: httpx.Client, server: Served) -> str:
    r = client.get(f"{server.base_url}/metrics")
    r.raise_for_status()
    return r.text


def counter_sum(text: str, name: str, model: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def gauge_values(text: str, name: str, model: str) -> float:
    return counter_sum(text, name, model)


def tree_rss_mb(root_pid: int) -> dict[str, float]:
    """RSS of the gateway process and of everything below it, MB."""
    from _common import descendants

    def rss(pid: int) -> float:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    below = sum(rss(pid) for pid, _ in descendants(root_pid))
    return {"gateway_mb": rss(root_pid), "below_mb": below}


# -- (a) throughput --------------------------------------------------------------------------


def url_of(server: Served, model: str) -> str:
    return f"{server.base_url}/v2/models/{model}/infer"


def measure_throughput(
    wrk: str, lua: dict[str, Path], client: httpx.Client, bare: Served, zs: Served,
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    prof = PROFILES[args.model]
    deploys = {}
    for target, (model, flags) in prof.deployments.items():
        deploys[target] = deploy_with(
            zs, model, [*flags, "--idle-timeout", "3600"], prof.artifact
        )  # fmt: skip
    rows: list[dict[str, Any]] = []
    for conns in args.concurrency:
        bare_rps = None
        for target in ("bare", "zs-off", "zs-batch"):
            if target == "bare":
                url, model = url_of(bare, prof.model), None
            else:
                model = prof.deployments[target][0]
                url = url_of(zs, model)
            run_wrk(wrk, url, conns, args.warmup, lua["plain"])  # warm-up, also scales out
            before = metrics_text(client, zs) if model else ""
            # Cores busy with other work (not wrk, this command, or the server measured).
            meter = CpuMeter((zs if model else bare).proc.pid)
            res = run_wrk(wrk, url, conns, args.duration, lua["plain"])
            cpu = meter.stop()
            res.pop("stdout")
            row: dict[str, Any] = {"target": target, "concurrency": conns, **res, "cpu": cpu}
            if model:
                after = metrics_text(client, zs)
                b0 = histogram_totals(before, "zeroserve_batch_size", model)
                b1 = histogram_totals(after, "zeroserve_batch_size", model)
                calls = b1["count"] - b0["count"]
                row["model_calls"] = calls
                row["mean_batch_size"] = (b1["sum"] - b0["sum"]) / calls if calls else None
                row["instances_after"] = model_status(client, zs.base_url, model)["instances"]
            if target == "bare":
                bare_rps = res["rps"]
            row["ratio_to_bare"] = res["rps"] / bare_rps if bare_rps else None
            rows.append(row)
            lat = res["latency_ms"]
            console.print(
                f"  c={conns:>3} {target:<9} {res['rps']:8.0f} req/s  p50 {lat['p50']:6.2f}"
                f"  p99 {lat['p99']:6.2f} ms  x{row['ratio_to_bare']:.2f}"
                f"  errors {sum(res['errors'].values())} non-2xx {res['non_2xx_3xx']}"
                + (f"  batch {row['mean_batch_size'] or 0:.1f}" if model else "")
                + f"  cores: ours {cpu['ours_cores']:.2f} other {cpu['other_cores']:.2f}",
                highlight=False,
            )
    return {"deploys": deploys, "rows": rows}


# -- (b) overload ----------------------------------------------------------------------------


def measure_overload(
    wrk: str, lua: dict[str, Path], client: httpx.Client, zs: Served, args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, (model, flags) in OVERLOAD_MODELS.items():
        entry: dict[str, Any] = {"model": model}
        if flags is not None:
            entry["deploy"] = deploy_with(zs, model, [*flags, "--idle-timeout", "3600"])
        entry["rss_before"] = tree_rss_mb(zs.proc.pid)
        res = run_wrk(
            wrk, url_of(zs, model), args.overload_connections, args.duration, lua["count"],
            timeout_s=args.overload_timeout,
        )  # fmt: skip
        entry["rss_after"] = tree_rss_mb(zs.proc.pid)
        res.pop("stdout")
        entry.update(res)
        codes = {int(k): v for k, v in (res["codes"] or {}).items()}
        entry["codes"] = codes
        bad = {k: v for k, v in codes.items() if k not in TARGETS["overload_allowed_statuses"]}
        refused = codes.get(429, 0) + codes.get(503, 0)
        entry["disallowed_statuses"] = bad
        entry["refused"] = refused
        entry["ok"] = not bad and res["errors"]["timeout"] == 0 and res["retry_after"] == refused
        out[label] = entry
        console.print(
            f"  {label}: {res['rps']:.0f} req/s, codes {codes}, Retry-After on"
            f" {res['retry_after']}/{refused} refusals, errors {res['errors']},"
            f" p99 {res['latency_ms']['p99']:.1f} ms",
            highlight=False,
        )
    return out


# -- (c) burst -------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """GET /api/models/NAME and /metrics every `every` s: instances, starting, desired, panic."""

    def __init__(self, base_url: str, model: str, t0: float, every: float) -> None:
        super().__init__(daemon=True)
        self.base_url, self.model, self.t0, self.every = base_url, model, t0, every
        self.samples: list[dict[str, Any]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10.0, trust_env=False) as c:
            next_at = time.perf_counter()
            while not self.stop_event.is_set():
                t = time.perf_counter() - self.t0
                with contextlib.suppress(httpx.HTTPError):
                    doc = model_status(c, self.base_url, self.model)
                    text = c.get(f"{self.base_url}/metrics").text
                    versions = doc.get("versions", [])
                    self.samples.append(
                        {
                            "t": t,
                            "instances": int(doc["instances"]),
                            "starting": sum(v.get("starting", 0) for v in versions),
                            "stopping": sum(v.get("stopping", 0) for v in versions),
                            "desired": gauge_values(text, "zeroserve_desired_instances", MODEL),
                            "panic": gauge_values(text, "zeroserve_autoscaler_panic", MODEL),
                            "queue": gauge_values(text, "zeroserve_queue_depth", MODEL),
                        }
                    )
                next_at += self.every
                self.stop_event.wait(max(0.0, next_at - time.perf_counter()))


class Probe(threading.Thread):
    """One connection, one request after another: (t, latency ms, status) while it runs."""

    def __init__(self, url: str, t0: float) -> None:
        super().__init__(daemon=True)
        self.url, self.t0 = url, t0
        self.points: list[tuple[float, float, int]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30.0, trust_env=False) as c:
            while not self.stop_event.is_set():
                t = time.perf_counter()
                try:
                    status = c.post(self.url, content=BODY, headers=HEADERS).status_code
                except httpx.HTTPError:
                    status = 0
                done = time.perf_counter()
                self.points.append((t - self.t0, (done - t) * 1e3, status))


def measure_burst(
    wrk: str, lua: dict[str, Path], client: httpx.Client, zs: Served, args: argparse.Namespace
) -> dict[str, Any]:
    flags = ["--idle-timeout", f"{args.burst_idle_timeout:g}"]
    deploy = deploy_with(zs, MODEL, flags)
    wait_for_zero(client, zs.base_url, MODEL, timeout_s=60.0)
    url = url_of(zs, MODEL)
    cold0 = counter_sum(metrics_text(client, zs), "zeroserve_cold_starts_total", MODEL)
    t0 = time.perf_counter()
    sampler = Sampler(zs.base_url, MODEL, t0, args.sample_every)
    sampler.start()
    time.sleep(args.burst_lead)
    probe = Probe(url, t0)
    burst_start = time.perf_counter() - t0
    probe.start()
    res = run_wrk(
        wrk, url, args.burst_connections, args.burst_duration, lua["count"], timeout_s=10.0
    )  # fmt: skip
    burst_end = time.perf_counter() - t0  # wrk has exited: the last answer is in
    probe.stop_event.set()
    probe.join()
    last_answer = time.perf_counter() - t0  # the probe's last request is answered too
    to_zero = wait_for_zero(client, zs.base_url, MODEL, timeout_s=120.0)
    zero_at = time.perf_counter() - t0
    time.sleep(args.burst_tail)
    sampler.stop_event.set()
    sampler.join()
    cold1 = counter_sum(metrics_text(client, zs), "zeroserve_cold_starts_total", MODEL)
    res.pop("stdout")
    codes = {int(k): v for k, v in (res["codes"] or {}).items()}
    samples = sampler.samples
    probe_lat = [p[1] for p in probe.points]
    return {
        "deploy": deploy,
        "idle_timeout_s": args.burst_idle_timeout,
        "wrk": {**res, "codes": codes},
        "burst_start_s": burst_start,
        "burst_end_s": burst_end,
        "last_answer_s": last_answer,
        "zero_at_s": zero_at,
        "back_to_zero_s": to_zero,
        "target_back_to_zero_s": args.burst_idle_timeout
        + TARGETS["back_to_zero_s_max_over_idle_timeout"],
        "peak_instances": max((s["instances"] for s in samples), default=0),
        "peak_desired": max((s["desired"] for s in samples), default=0),
        "panic_seen": any(s["panic"] > 0 for s in samples),
        "cold_starts": cold1 - cold0,
        "samples": samples,
        "probe": {
            "requests": len(probe.points),
            "non_200": sum(1 for p in probe.points if p[2] != 200),
            "max_ms": max(probe_lat, default=float("nan")),
            "points": [list(p) for p in probe.points],
        },
    }


def plot_burst(burst: dict[str, Any], path: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = burst["samples"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    t = [s["t"] for s in samples]
    ax1.step(t, [s["instances"] for s in samples], where="post", label="instances (live)")
    ax1.step(t, [s["desired"] for s in samples], where="post", ls="--", label="desired")
    ax1.step(t, [s["starting"] for s in samples], where="post", ls=":", label="starting")
    panic = [s["t"] for s in samples if s["panic"] > 0]
    if panic:
        ax1.plot(panic, [-0.15] * len(panic), "r|", ms=6, label="panic mode")
    ax1.set_ylabel("instances")
    ax1.legend(loc="upper right", fontsize=8)
    pts = burst["probe"]["points"]
    ax2.plot([p[0] for p in pts], [p[1] for p in pts], ".", ms=2, label="probe request latency")
    ax2.set_yscale("log")
    ax2.set_ylabel("latency (ms, log)")
    ax2.set_xlabel("seconds")
    w = burst["wrk"]["latency_ms"]
    ax2.axhline(w["p50"], color="g", lw=0.8, label=f"wrk p50 {w['p50']:.1f} ms (whole burst)")
    ax2.axhline(w["p99"], color="r", lw=0.8, label=f"wrk p99 {w['p99']:.1f} ms (whole burst)")
    ax2.legend(loc="upper right", fontsize=8)
    for ax in (ax1, ax2):
        ax.axvspan(burst["burst_start_s"], burst["burst_end_s"], color="0.9", zorder=0)
        ax.axvline(burst["zero_at_s"], color="k", lw=0.6, ls=":")
    ax1.set_title(
        f"iris ONNX burst: 0 -> {burst['wrk']['connections']} connections (wrk) for"
        f" {burst['wrk']['duration_s']:.0f} s -> 0, --idle-timeout {burst['idle_timeout_s']:g};"
        f" back to zero {burst['back_to_zero_s']:.2f} s after",
        fontsize=9,
    )
    fig.text(0.01, 0.005, machine, fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- report ----------------------------------------------------------------------------------


def throughput_table(
    tp: dict[str, Any], duration: float, prof: Profile = PROFILES["iris"]
) -> Table:  # fmt: skip
    table = Table(title=f"{prof.title} throughput, wrk {duration:g} s per cell (latency ms)")
    for col in (
        "conc", "server", "req/s", "x bare", "p50", "p95", "p99", "errors", "non-2xx",
        "batch", "inst",
    ):  # fmt: skip
        table.add_column(col, justify="left" if col in ("server",) else "right")
    for r in tp["rows"]:
        lat = r["latency_ms"]
        table.add_row(
            str(r["concurrency"]), prof.labels[r["target"]], f"{r['rps']:.0f}",
            f"{r['ratio_to_bare']:.2f}", f"{lat['p50']:.2f}", f"{lat['p95']:.2f}",
            f"{lat['p99']:.2f}", str(sum(r["errors"].values())), str(r["non_2xx_3xx"]),
            f"{r['mean_batch_size']:.1f}" if r.get("mean_batch_size") else "",
            str(r.get("instances_after", "")),
        )  # fmt: skip
    table.caption = prof.caption
    return table


def overload_table(ov: dict[str, Any]) -> Table:
    table = Table(title="overload: 512 connections (wrk --timeout 10s)")
    for col in (
        "deployment", "req/s", "statuses", "Retry-After", "timeouts", "sock err", "p99 ms",
        "gw RSS MB", "ok",
    ):  # fmt: skip
        table.add_column(col, justify="left" if col in ("deployment", "statuses") else "right")
    for label, e in ov.items():
        err = e["errors"]
        table.add_row(
            label, f"{e['rps']:.0f}", ", ".join(f"{k}: {v}" for k, v in sorted(e["codes"].items())),
            f"{e['retry_after']}/{e['refused']}", str(err["timeout"]),
            str(err["connect"] + err["read"] + err["write"]), f"{e['latency_ms']['p99']:.1f}",
            f"{e['rss_before']['gateway_mb']:.0f} -> {e['rss_after']['gateway_mb']:.0f}",
            "yes" if e["ok"] else "NO",
        )  # fmt: skip
    return table


def burst_table(b: dict[str, Any]) -> Table:
    w = b["wrk"]
    table = Table(title=f"burst: 0 -> {w['connections']} connections for {w['duration_s']:.1f} s")
    table.add_column("")
    table.add_column("value", justify="right")
    lat = w["latency_ms"]
    rows = [
        ("requests (wrk), req/s", f"{w['requests']}, {w['rps']:.0f}"),
        ("statuses", ", ".join(f"{k}: {v}" for k, v in sorted(w["codes"].items()))),
        ("wrk errors (timeouts)", f"{sum(w['errors'].values())} ({w['errors']['timeout']})"),
        ("latency p50 / p95 / p99 / max ms", "{p50:.1f} / {p95:.1f} / {p99:.1f} / {max:.0f}".format(**lat)),  # noqa: E501
        ("peak instances (desired)", f"{b['peak_instances']} ({b['peak_desired']:g})"),
        ("panic mode seen", "yes" if b["panic_seen"] else "no"),
        ("cold starts (zeroserve_cold_starts_total)", f"{b['cold_starts']:g}"),
        ("back to zero after the last answer", f"{b['back_to_zero_s']:.2f} s"),
        ("target: idle timeout + 2 s", f"{b['target_back_to_zero_s']:g} s"),
        ("probe requests, non-200, max ms", f"{b['probe']['requests']}, {b['probe']['non_200']}, {b['probe']['max_ms']:.0f}"),  # noqa: E501
    ]  # fmt: skip
    for k, v in rows:
        table.add_row(k, v)
    return table


def machine_line(m: dict[str, Any], wrk: str) -> str:
    return (
        f"{m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, onnxruntime"
        f" {m['packages']['onnxruntime']}, uvicorn {m['packages']['uvicorn']}, {wrk}"
    )


def report(result: dict[str, Any]) -> None:
    console.width = max(console.width, 132)  # the tables are wide; a pipe gives 80
    console.print(f"\n[bold]machine[/bold]: {result['machine_line']}", highlight=False)
    console.print("[dim]wrk shares the 2 cores with the servers it measures.[/dim]")
    if "throughput" in result:
        settings = result["settings"]
        console.print(
            throughput_table(
                result["throughput"], settings["duration"], PROFILES[settings["model"]]
            )
        )  # fmt: skip
    if "overload" in result:
        console.print(overload_table(result["overload"]))
    if "burst" in result:
        console.print(burst_table(result["burst"]))
    if "verdict" in result:
        for k, v in result["verdict"].items():
            console.print(f"  target {k}: {'met' if v['met'] else 'MISSED'} ({v['detail']})")


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    prof = PROFILES[result["settings"]["model"]]
    tp = result.get("throughput")
    if tp:
        row = next(
            (r for r in tp["rows"] if r["target"] == "zs-batch" and r["concurrency"] == 32), None
        )
        if row:
            ratio, p99, p99_max = row["ratio_to_bare"], row["latency_ms"]["p99"], prof.p99_ms_max
            wants = f">= {prof.ratio_min:g}x" + (f", p99 < {p99_max:g} ms" if p99_max else "")
            out["conc32_batching"] = {
                "met": ratio >= prof.ratio_min and (p99_max is None or p99 < p99_max),
                "detail": f"{ratio:.2f}x bare, p99 {p99:.1f} ms; wants {wants}",
            }
    ov = result.get("overload")
    if ov:
        out["overload_512"] = {
            "met": all(not e["disallowed_statuses"] and e["errors"]["timeout"] == 0 for e in ov.values()),  # noqa: E501
            "detail": "; ".join(
                f"{k}: disallowed {e['disallowed_statuses'] or 'none'}, timeouts"
                f" {e['errors']['timeout']}" for k, e in ov.items()
            ),
        }  # fmt: skip
    b = result.get("burst")
    if b:
        out["back_to_zero"] = {
            "met": b["back_to_zero_s"] <= b["target_back_to_zero_s"],
            "detail": f"{b['back_to_zero_s']:.2f} s; wants <= {b['target_back_to_zero_s']:g} s",
        }
    return out


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model", choices=sorted(PROFILES), default="iris",
        help="what the throughput part serves [iris]; minilm: the MiniLM model folder against"
        "\nbench/baseline_minilm.py, concurrency 1,8,32, no overload or burst part",
    )  # fmt: skip
    p.add_argument("--duration", type=float, default=10.0, help="seconds per cell [10]")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per cell [2]")
    p.add_argument(
        "--concurrency", default=None,
        help="wrk connections, comma-separated [1,8,32,128; minilm: 1,8,32]",
    )  # fmt: skip
    p.add_argument("--overload-connections", type=int, default=512, help="[512]")
    p.add_argument("--overload-timeout", type=float, default=10.0, help="wrk --timeout [10]")
    p.add_argument("--burst-connections", type=int, default=200, help="[200]")
    p.add_argument("--burst-duration", type=float, default=20.0, help="seconds [20]")
    p.add_argument("--burst-idle-timeout", type=float, default=2.0, help="seconds [2]")
    p.add_argument("--burst-lead", type=float, default=1.0, help="idle seconds before [1]")
    p.add_argument("--burst-tail", type=float, default=1.0, help="seconds sampled at zero [1]")
    p.add_argument("--sample-every", type=float, default=0.25, help="seconds [0.25]")
    p.add_argument("--out", type=Path, default=None, help="[bench/results/load[-MODEL].json]")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "burst.png")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-overload", action="store_true")
    p.add_argument("--skip-burst", action="store_true")
    args = p.parse_args(argv)
    prof = PROFILES[args.model]
    if args.concurrency is None:
        args.concurrency = prof.concurrency
    if args.out is None:
        suffix = "" if args.model == "iris" else f"-{args.model}"
        args.out = BENCH_DIR / "results" / f"load{suffix}.json"
    if args.model != "iris":  # overload and burst are iris scenarios
        args.skip_overload = args.skip_burst = True
        if args.skip_throughput:
            p.error(f"--model {args.model} measures throughput only; drop --skip-throughput")
    try:
        args.concurrency = [int(x) for x in re.split(r"[,\s]+", args.concurrency.strip()) if x]
    except ValueError:
        p.error("--concurrency takes integers, e.g. 1,8,32,128")
    if args.duration <= 0 or any(c < 1 for c in args.concurrency):
        p.error("--duration must be > 0 and every concurrency >= 1")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    prof = PROFILES[args.model]
    ensure_model()
    if args.model == "minilm":
        ensure_minilm()
    wrk = ensure_wrk()
    machine = machine_info()
    result: dict[str, Any] = {
        "benchmark": "load",
        "created": utc_now(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine,
        "wrk": wrk_version(wrk),
        "machine_line": machine_line(machine, wrk_version(wrk)),
        "git": git_info(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "request_body": json.loads(prof.body),
        "targets": TARGETS,
        "load_generator_note": "wrk shares the 2 cores with the servers it measures",
    }
    with (
        tempfile.TemporaryDirectory(prefix="zeroserve-load-") as tmp,
        httpx.Client(timeout=60.0, trust_env=False) as client,
    ):
        work = Path(tmp)
        lua = write_lua(work, prof.body)
        if not (args.skip_throughput and args.skip_overload):
            with zeroserve_up(work) as zs, explained(zs):
                if not args.skip_throughput:
                    with baseline_up(work, prof) as bare:
                        console.print("[bold]throughput[/bold]")
                        result["throughput"] = measure_throughput(
                            wrk, lua, client, bare, zs, args
                        )  # fmt: skip
                if not args.skip_overload:
                    if args.skip_throughput:
                        model, flags = TARGETS_ZS["zs-batch"]
                        deploy_with(zs, model, [*flags, "--idle-timeout", "3600"])
                    console.print("[bold]overload[/bold]")
                    result["overload"] = measure_overload(wrk, lua, client, zs, args)
        if not args.skip_burst:
            with zeroserve_up(work, name="zeroserve-burst") as zs, explained(zs):
                console.print("[bold]burst[/bold]")
                result["burst"] = measure_burst(wrk, lua, client, zs, args)
    result["verdict"] = verdict(result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def finish(result: dict[str, Any]) -> int:
        report(result)
        if "burst" in result:
            plot_burst(result["burst"], args.plot, result["machine_line"])
            console.print(f"wrote {args.plot}")
        write_json(args.out, result)
        console.print(f"wrote {args.out}")
        return 0

    return run_bench(lambda: run(args), finish)


if __name__ == "__main__":
    sys.exit(main())
