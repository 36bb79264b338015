"""Cold start by start path, for iris ONNX and MiniLM: a new interpreter (spawn), the fork
server (fork), and a version snapshot (snapshot), measured end to end in one run.

    .venv/bin/python bench/coldstart.py [--models iris,minilm] [--trials N]
        [--out bench/results/coldstart.json]

Models (`--models`, both by default):
  iris    examples/iris/iris.onnx, the onnx runtime; one flower in, label + probabilities out.
  minilm  examples/minilm/build/minilm/, a model folder (model.onnx + tokenizer.json +
          model.py) served by the Python runtime; `text` BYTES [1] in, `embedding` FP32
          [1, 384] out. Built by examples/minilm/build.py if missing.

A trial is "the model is at zero instances -> the first request is answered", timed by the
client from sending the request until the whole response has been read. The command starts
`zeroserve up --log-level info` twice, on free 127.0.0.1 ports with temporary state dirs:

1. with ZEROSERVE_INSTANCE_START=spawn: every instance is a fresh interpreter ("spawn"); each
   model is deployed plainly as NAME.
2. with the default start (the fork server; onnx and python instances fork from its
   onnxruntime child, zs-forkserv-ort): each model is deployed plainly as NAME ("fork") and
   with `--snapshot` as NAME-snap ("snapshot"); trials alternate between the two (ABBA).

On each server the models are measured one after the other. Every deployment uses a short
`--idle-timeout` (0.5 s), so the model goes back to zero after each answer. Before each trial
the command waits until GET /api/models/NAME shows instances, starting and stopping all 0 for
every model of that server, and no instance process is left below the gateway, then waits
`--settle` more. `--warmup` untimed trials per model and path come first (the first start
after a deploy also pays for page-cache misses). Snapshot templates load in the background
after a deploy: the command waits until GET /api/models/NAME-snap reports snapshot_bytes.

Each trial is checked: 200, `x-zeroserve-cold-start: true`, the right answer (iris: the label,
and probabilities within 1e-5 of onnxruntime in this process; MiniLM: FP32 [1, 384], L2 norm 1
within 1e-4, and within 1e-4 per element of the model's own model.py run in this process),
exactly one start counted in `zeroserve_cold_start_seconds` with the expected path label, and
one matching `started <id> in X ms (fetch F, load L, <path>)` log line. A trial that fails a
check counts as a failure and is left out of the figures.

Breakdown per trial (platform figures from /metrics deltas, fetch and load from the log line):
  start            `zeroserve_cold_start_seconds` delta (the instance start, gateway side)
  fork + imports   start - fetch - load (spawn: interpreter start and imports; fork: fork and
                   what the child does before loading; snapshot: all of it)
  fetch, load      the log line (whole milliseconds; load includes importing the runtime
                   where it is not imported yet, and for MiniLM importing model.py)
  predict + IPC    `zeroserve_request_duration_seconds` delta - start: routing, queueing,
                   dispatch over the instance socket, the first predict, encoding
  HTTP + client    end to end - gateway request duration

The machine may be shared: for each server and model the command records how many cores
other processes kept busy meanwhile (from /proc; warned about above 0.1), and
`--quiet-wait S` waits up to S seconds before each server for the machine to go quiet.

Prints tables, writes JSON (machine, git, settings, every trial, summaries) and the same tables
as Markdown next to it (`.md`). Exits 0, 1 if the run could not be made, 2 if a trial failed.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from _common import (
    BENCH_DIR,
    BODY,
    HEADERS,
    IRIS,
    IRIS_INPUT,
    MINILM,
    MINILM_BODY,
    MINILM_TEXT,
    ROOT,
    BenchError,
    CpuMeter,
    LogTail,
    Served,
    console,
    deploy,
    descendants,
    ensure_minilm,
    ensure_model,
    explained,
    git_info,
    histogram_totals,
    is_at_zero,
    machine_info,
    model_status,
    no_nan,
    parent_comm,
    phase,
    run_bench,
    summarize,
    utc_now,
    write_json,
    zeroserve_up,
)
from rich.console import Console
from rich.table import Table

PATHS = ("spawn", "fork", "snapshot")
REQUEST_SECONDS = "zeroserve_request_duration_seconds"
COLD_START_SECONDS = "zeroserve_cold_start_seconds"
PROBABILITY_TOLERANCE = 1e-5
EMBEDDING_TOLERANCE = 1e-4  # on the L2 norm, and per element against this process's answer
# Cores kept busy by processes outside the benchmark above which a run is called disturbed.
OTHER_CORES_WARNING = 0.1
# Long-lived processes of the platform; anything else below the gateway is an instance.
INFRA_COMMS = ("zs-forkserver", "zs-forkserv-ort", "zs-template")

# (field, label) of the breakdown, in the order of the tables.
PIECES = (
    ("e2e_ms", "first request, end to end"),
    ("gateway_ms", "· in the gateway"),
    ("start_ms", "· · instance start"),
    ("fork_and_imports_ms", "· · · fork/spawn + imports"),
    ("fetch_ms", "· · · artifact fetch"),
    ("load_ms", "· · · model load"),
    ("predict_and_ipc_ms", "· · first predict + IPC"),
    ("http_and_client_ms", "· HTTP + client"),
)


# -- the models and what their answers must be -----------------------------------------------


class Expected(Protocol):
    def check(self, outputs: dict[str, dict[str, Any]]) -> list[str]:
        """What is wrong with a V2 answer's outputs, by name (nothing: [])."""
        ...


@dataclass(frozen=True)
class IrisExpected:
    label: int
    probabilities: tuple[float, ...]

    def check(self, outputs: dict[str, dict[str, Any]]) -> list[str]:
        label, probabilities = int(outputs["label"]["data"][0]), outputs["probabilities"]["data"]
        wrong = []
        if label != self.label:
            wrong.append(f"label {label}, expected {self.label}")
        if len(probabilities) != len(self.probabilities) or any(
            abs(float(a) - b) > PROBABILITY_TOLERANCE
            for a, b in zip(probabilities, self.probabilities, strict=False)
        ):
            wrong.append(f"probabilities {probabilities}, expected {list(self.probabilities)}")
        return wrong


@dataclass(frozen=True)
class EmbeddingExpected:
    embedding: tuple[float, ...]  # what model.py computes in this process

    def check(self, outputs: dict[str, dict[str, Any]]) -> list[str]:
        out = outputs["embedding"]
        wrong = []
        if out.get("datatype") != "FP32" or list(out.get("shape", [])) != [1, 384]:
            wrong.append(f"embedding {out.get('datatype')} {out.get('shape')}, not FP32 [1, 384]")
        data = [float(x) for x in out["data"]]
        norm = math.sqrt(sum(x * x for x in data))
        if abs(norm - 1.0) > EMBEDDING_TOLERANCE:
            wrong.append(f"embedding L2 norm {norm:.6f}, not 1")
        if len(data) != len(self.embedding):
            wrong.append(f"embedding has {len(data)} values, expected {len(self.embedding)}")
        else:
            diff = max(abs(a - b) for a, b in zip(data, self.embedding, strict=True))
            if diff > EMBEDDING_TOLERANCE:
                wrong.append(f"embedding differs from this process's by up to {diff:.2e}")
        return wrong


def iris_reference() -> IrisExpected:
    """What a freshly loaded iris.onnx predicts for the fixed input, in this process."""
    import numpy as np
    import onnxruntime as ort

    ensure_model()
    session = ort.InferenceSession(str(IRIS), providers=["CPUExecutionProvider"])
    feed = {"X": np.asarray([IRIS_INPUT], dtype=np.float32)}
    label, probabilities = session.run(["label", "probabilities"], feed)
    return IrisExpected(int(label[0]), tuple(float(p) for p in probabilities[0]))


def minilm_reference() -> EmbeddingExpected:
    """The MiniLM folder's own model.py, loaded and run on the fixed text in this process."""
    import numpy as np

    ensure_minilm()
    spec = importlib.util.spec_from_file_location("_bench_minilm_model", MINILM / "model.py")
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot import {MINILM / 'model.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.MiniLM()
    model.load(str(MINILM))
    out = model.predict({"text": np.asarray([MINILM_TEXT.encode()], dtype=object)})
    return EmbeddingExpected(tuple(float(x) for x in out["embedding"][0]))


@dataclass(frozen=True)
class BenchModel:
    key: str  # also the plain deployment's name; the snapshot one is KEY-snap
    title: str
    artifact: Path
    body: bytes
    input: Any
    targets_p95_ms: dict[str, float]  # docs/DESIGN.md and the task: first request, p95

    def name(self, path: str) -> str:
        return f"{self.key}-snap" if path == "snapshot" else self.key


MODELS = {
    "iris": BenchModel(
        "iris", "iris ONNX", IRIS, BODY, IRIS_INPUT, {"fork": 50.0, "snapshot": 15.0}
    ),
    "minilm": BenchModel(
        "minilm", "MiniLM (Python runtime, model folder)", MINILM, MINILM_BODY, MINILM_TEXT,
        {"fork": 1000.0, "snapshot": 100.0},
    ),
}  # fmt: skip
REFERENCES: dict[str, Callable[[], Expected]] = {"iris": iris_reference, "minilm": minilm_reference}


def artifact_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def check_answer(r: httpx.Response, expected: Expected) -> list[str]:
    """What is wrong with a cold answer (nothing: [])."""
    if r.status_code != 200:
        return [f"status {r.status_code}: {r.text[:200]}"]
    wrong = []
    if r.headers.get("x-zeroserve-cold-start") != "true":
        wrong.append(f"x-zeroserve-cold-start: {r.headers.get('x-zeroserve-cold-start')!r}")
    try:
        outputs = {o["name"]: o for o in r.json()["outputs"]}
        wrong += expected.check(outputs)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        return [*wrong, f"unreadable answer ({exc!r}): {r.text[:200]}"]
    return wrong


# -- one trial -------------------------------------------------------------------------------


@dataclass
class Trial:
    model_key: str  # iris, minilm
    path: str  # the start path this trial is meant to take
    model: str  # the deployment's name
    index: int  # among this path's trials (warm-ups count separately)
    warmup: bool
    ok: bool = False
    failures: list[str] = field(default_factory=list)
    status: int | None = None
    cold_header: str = ""
    observed_path: str = ""  # the path label of the start counted in /metrics
    instance_id: str = ""
    instance_comms: list[str] = field(default_factory=list)  # /proc/PID/comm after the answer
    instance_parents: list[str] = field(default_factory=list)  # their parents' comm
    to_zero_s: float | None = None  # previous answer -> this model and the others at zero
    procs_lag_s: float = 0.0  # API said zero -> no instance process left below the gateway
    loadavg1: float = 0.0
    e2e_ms: float | None = None
    gateway_ms: float | None = None
    start_ms: float | None = None  # zeroserve_cold_start_seconds delta
    start_log_ms: float | None = None  # the log line's total (whole ms)
    fetch_ms: float | None = None
    load_ms: float | None = None
    fork_and_imports_ms: float | None = None
    predict_and_ipc_ms: float | None = None
    http_and_client_ms: float | None = None


@dataclass
class Runner:
    """Trials against one running `zeroserve up` whose models are all deployed."""

    client: httpx.Client
    server: Served
    models: Sequence[str]  # every deployment on this server
    expected: dict[str, Expected]  # by model key
    settle_s: float
    zero_timeout_s: float
    log: LogTail = field(init=False)
    last_answer: float | None = None

    def __post_init__(self) -> None:
        self.log = LogTail(self.server.stderr_path)
        self.log.skip_to_end()

    def instances(self) -> list[tuple[int, str]]:
        return sorted(
            ((pid, c) for pid, c in descendants(self.server.proc.pid) if c not in INFRA_COMMS),
            key=lambda pc: pc[1],
        )

    def instance_comms(self) -> list[str]:
        return [c for _, c in self.instances()]

    def wait_quiet(self) -> tuple[float, float]:
        """Wait until every model is at zero and no instance process is left; returns the
        seconds until the API said zero, and how much longer the processes took to go."""
        t0 = time.perf_counter()
        api_zero: float | None = None
        while True:
            now = time.perf_counter()
            if api_zero is None and all(
                is_at_zero(model_status(self.client, self.server.base_url, m)) for m in self.models
            ):
                api_zero = now
            if api_zero is not None and not self.instance_comms():
                return api_zero - t0, now - api_zero
            if now - t0 > self.zero_timeout_s:
                raise BenchError(
                    f"not at zero after {self.zero_timeout_s:g} s (API zero: "
                    f"{api_zero is not None}, processes: {self.instance_comms()})"
                )
            time.sleep(0.01)

    def metrics(self) -> str:
        r = self.client.get(f"{self.server.base_url}/metrics")
        r.raise_for_status()
        return r.text

    def trial(self, bm: BenchModel, path: str, index: int, *, warmup: bool) -> Trial:
        model = bm.name(path)
        t = Trial(model_key=bm.key, path=path, model=model, index=index, warmup=warmup)
        _, t.procs_lag_s = self.wait_quiet()
        if self.last_answer is not None:
            t.to_zero_s = time.perf_counter() - self.last_answer - t.procs_lag_s
        time.sleep(self.settle_s)
        self.log.starts()  # discard anything before this trial
        before = self.metrics()
        t.loadavg1 = os.getloadavg()[0]
        url = f"{self.server.base_url}/v2/models/{model}/infer"
        t0 = time.perf_counter()
        try:
            r = self.client.post(url, content=bm.body, headers=HEADERS)
        except httpx.HTTPError as exc:
            self.last_answer = time.perf_counter()
            t.failures.append(f"request failed: {exc!r}")
            return t
        self.last_answer = time.perf_counter()
        t.e2e_ms = (self.last_answer - t0) * 1e3
        live = self.instances()
        t.instance_comms = [c for _, c in live]
        t.instance_parents = [parent_comm(pid) for pid, _ in live]
        t.status, t.cold_header = r.status_code, r.headers.get("x-zeroserve-cold-start", "")
        t.failures.extend(check_answer(r, self.expected[bm.key]))
        self._account(t, before, self.metrics())
        t.ok = not t.failures
        return t

    def _account(self, t: Trial, before: str, after: str) -> None:
        """The platform's side of the trial: /metrics deltas, then the log line."""
        req = [histogram_totals(m, REQUEST_SECONDS, t.model) for m in (before, after)]
        if req[1]["count"] - req[0]["count"] != 1:
            t.failures.append(f"{REQUEST_SECONDS} counted {req[1]['count'] - req[0]['count']:g}")
        t.gateway_ms = (req[1]["sum"] - req[0]["sum"]) * 1e3
        t.http_and_client_ms = (t.e2e_ms or 0.0) - t.gateway_ms
        counted = _starts_counted(before, after, t.model)
        if len(counted) != 1 or next(iter(counted.values()))[0] != 1:
            t.failures.append(f"{COLD_START_SECONDS} counted {counted or 'no start'}")
        if counted:
            t.observed_path, (_, t.start_ms) = next(iter(counted.items()))
        if t.observed_path and t.observed_path != t.path:
            t.failures.append(f"started via {t.observed_path}, not {t.path}")
        self._read_log(t)

    def _read_log(self, t: Trial) -> None:
        starts = self.log.wait_starts(t.model, timeout_s=2.0)
        if len(starts) != 1:
            t.failures.append(f"expected one 'started' log line, got {starts}")
        if not starts:
            return
        s = starts[0]
        t.instance_id, t.start_log_ms = s["instance_id"], s["total_ms"]
        t.fetch_ms, t.load_ms = s["fetch_ms"], s["load_ms"]
        if s["path"] != t.observed_path:
            t.failures.append(f"log says path {s['path']}, /metrics {t.observed_path}")
        if t.start_ms is not None and t.gateway_ms is not None:
            t.fork_and_imports_ms = t.start_ms - s["fetch_ms"] - s["load_ms"]
            t.predict_and_ipc_ms = t.gateway_ms - t.start_ms


def _starts_counted(before: str, after: str, model: str) -> dict[str, tuple[float, float]]:
    """Starts of `model` between two /metrics texts: {path: (count, total ms)}."""
    counted: dict[str, tuple[float, float]] = {}
    for p in PATHS:
        b, a = (histogram_totals(m, COLD_START_SECONDS, model, path=p) for m in (before, after))
        if a["count"] != b["count"]:
            counted[p] = (a["count"] - b["count"], (a["sum"] - b["sum"]) * 1e3)
    return counted


# -- one server ------------------------------------------------------------------------------


def wait_for_template(
    client: httpx.Client, server: Served, name: str, timeout_s: float
) -> float | None:  # fmt: skip
    """Seconds until GET /api/models/NAME reports its snapshot's bytes (None: this platform
    does not report them, or none appeared in time; the trials then show which path was
    taken)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        versions = model_status(client, server.base_url, name).get("versions", [])
        if not versions or "snapshot_bytes" not in versions[-1]:
            return None
        if versions[-1]["snapshot_bytes"]:
            return time.perf_counter() - t0
        time.sleep(0.05)
    console.print(f"  [yellow]{name}: no snapshot template after {timeout_s:g} s[/yellow]")
    return None


def wait_for_quiet_machine(max_wait_s: float) -> None:
    """Wait (at most max_wait_s) for 2 s in which other processes kept < 0.1 cores busy."""
    t0 = time.perf_counter()
    while True:
        meter = CpuMeter(os.getpid())
        time.sleep(2.0)
        other = meter.stop()["other_cores"]
        if other < OTHER_CORES_WARNING:
            return
        if time.perf_counter() - t0 > max_wait_s:
            console.print(f"  [yellow]machine still busy ({other:.2f} cores): going on[/yellow]")
            return
        console.print(f"  [dim]waiting for a quiet machine ({other:.2f} cores busy)[/dim]")


def _print_trial(t: Trial, of: int) -> None:
    what = "warm-up" if t.warmup else f"{t.index + 1:>3}/{of}"
    if t.e2e_ms is None:
        console.print(
            f"  {t.model_key} {t.path:>8} {what}: [red]{t.failures}[/red]", soft_wrap=True
        )
        return
    line = (
        f"  {t.model_key} {t.path:>8} {what}: {t.e2e_ms:6.1f} ms, start {t.start_ms or 0:5.1f}"
        f" (fetch {t.fetch_ms or 0:.0f}, load {t.load_ms or 0:.0f}, {t.observed_path or '?'}),"
        f" predict+IPC {t.predict_and_ipc_ms or 0:4.1f}, HTTP {t.http_and_client_ms or 0:4.1f}"
    )
    failures = f" [red]{t.failures}[/red]" if t.failures else ""
    console.print(line + failures, highlight=False, soft_wrap=True)


def _other_load_warning(cpu: dict[str, float], what: str) -> None:
    if cpu["other_cores"] > OTHER_CORES_WARNING:
        console.print(
            f"  [yellow]{what}: other work kept {cpu['other_cores']:.2f} cores busy meanwhile:"
            " these figures are inflated[/yellow]"
        )


def run_server(
    client: httpx.Client, work: Path, paths: Sequence[str], models: Sequence[BenchModel],
    expected: dict[str, Expected], args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    """One `zeroserve up` serving `paths` (["spawn"], or some of ["fork", "snapshot"]) of
    every model; the models are measured one after the other."""
    spawn = list(paths) == ["spawn"]
    name = "zeroserve-spawn" if spawn else "zeroserve-fork"
    env = {"ZEROSERVE_INSTANCE_START": "spawn"} if spawn else None
    unset = () if spawn else ("ZEROSERVE_INSTANCE_START",)  # the default: the fork server
    if args.quiet_wait > 0:
        wait_for_quiet_machine(args.quiet_wait)
    started = utc_now()
    with zeroserve_up(work, name=name, env=env, unset_env=unset) as zs, explained(zs):
        names = list(dict.fromkeys(bm.name(p) for bm in models for p in paths))
        deploy_s = {}
        for bm in models:
            for p in paths:
                if bm.name(p) in deploy_s:
                    continue
                t0 = time.perf_counter()
                deploy(zs, bm.name(p), args.idle_timeout, snapshot=p == "snapshot",
                       artifact=bm.artifact)  # fmt: skip
                deploy_s[bm.name(p)] = time.perf_counter() - t0
        template_s = {
            bm.name("snapshot"): wait_for_template(client, zs, bm.name("snapshot"), 300.0)
            for bm in models
            if "snapshot" in paths
        }
        processes = sorted(c for _, c in descendants(zs.proc.pid))
        meter = CpuMeter(zs.proc.pid)
        runner = Runner(client, zs, names, expected, args.settle, args.zero_timeout)
        warmups, trials, cpu_by_model = [], [], {}
        for bm in models:
            model_meter = CpuMeter(zs.proc.pid)
            for i in range(args.warmup):
                for p in paths:
                    warmups.append(runner.trial(bm, p, i, warmup=True))
                    _print_trial(warmups[-1], args.warmup)
            for i in range(args.trials):
                # ABBA order, so neither path always runs right after the other.
                for p in paths if i % 2 == 0 else list(reversed(paths)):
                    trials.append(runner.trial(bm, p, i, warmup=False))
                    _print_trial(trials[-1], args.trials)
            runner.wait_quiet()
            cpu_by_model[bm.key] = model_meter.stop()
            _other_load_warning(cpu_by_model[bm.key], bm.key)
        cpu = meter.stop()
        final = runner.metrics()
        cold_metrics = {
            n: {p: histogram_totals(final, COLD_START_SECONDS, n, path=p) for p in PATHS}
            for n in names
        }
    return {
        "server": name,
        "started": started,
        "env": env or {},
        "paths": list(paths),
        "models": {bm.key: {p: bm.name(p) for p in paths} for bm in models},
        "deploy_s": deploy_s,
        "template_ready_s": template_s,
        "cpu": cpu,
        "cpu_by_model": cpu_by_model,
        "processes_at_start": processes,
        "cold_start_seconds_at_end": cold_metrics,
        "loadavg_at_end": list(os.getloadavg()),
        "warmups": [asdict(t) for t in warmups],
        "trials": [asdict(t) for t in trials],
    }


# -- summaries -------------------------------------------------------------------------------


def summarize_path(trials: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ok = [t for t in trials if t["ok"]]
    reasons: Counter[str] = Counter()
    for t in trials:
        for f in t["failures"]:
            reasons[f.split(":")[0].split(",")[0]] += 1
    return {
        "trials": len(trials),
        "ok": len(ok),
        "failed": len(trials) - len(ok),
        "failure_reasons": dict(reasons),
        "not_cold": sum(1 for t in trials if t["cold_header"] != "true"),
        "instance_comms": dict(Counter(c for t in trials for c in t["instance_comms"])),
        "instance_parents": dict(Counter(c for t in trials for c in t["instance_parents"])),
        "to_zero_s": summarize([t["to_zero_s"] for t in trials if t["to_zero_s"]], (50, 95)),
        "procs_lag_s": summarize([t["procs_lag_s"] for t in trials], (50, 95)),
        "pieces": {f: summarize([t[f] for t in ok], (50, 95)) for f, _ in PIECES},
    }


def compare(bm: BenchModel, summaries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each path of one model against that model's spawn path in the same run, and against
    its target."""
    out: dict[str, dict[str, Any]] = {}
    base = summaries.get("spawn", {}).get("pieces", {}).get("e2e_ms")
    for p, s in summaries.items():
        e2e = s["pieces"]["e2e_ms"]
        row: dict[str, Any] = {"p50_ms": e2e["p50"], "p95_ms": e2e["p95"], "max_ms": e2e["max"]}
        if base and base["n"]:
            row["p50_vs_spawn"] = e2e["p50"] / base["p50"]
            row["p95_vs_spawn"] = e2e["p95"] / base["p95"]
        if p in bm.targets_p95_ms:
            row["target_p95_ms"] = bm.targets_p95_ms[p]
            row["target_met"] = bool(e2e["p95"] <= bm.targets_p95_ms[p]) and s["failed"] == 0
        out[p] = row
    return out


# -- report ----------------------------------------------------------------------------------


def _ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _ratio(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.3f}" if key in row else "-"


def _target(row: dict[str, Any]) -> str:
    if "target_p95_ms" not in row:
        return "-"
    return f"≤{row['target_p95_ms']:g} {'met' if row['target_met'] else 'missed'}"


def headline_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["model", "path", "ok/fail", "p50", "p95", "max", "mean", "p50÷spawn", "p95÷spawn",
            "p95 target"]  # fmt: skip
    rows = []
    for key, by_path in result["comparison"].items():
        for p, row in by_path.items():
            s = result["summary"][key][p]
            e2e = s["pieces"]["e2e_ms"]
            rows.append(
                [
                    key, p, f"{s['ok']}/{s['failed']}", _ms(e2e["p50"]), _ms(e2e["p95"]),
                    _ms(e2e["max"]), _ms(e2e["mean"]), _ratio(row, "p50_vs_spawn"),
                    _ratio(row, "p95_vs_spawn"), _target(row),
                ]
            )  # fmt: skip
    return head, rows


def breakdown_rows(result: dict[str, Any], key: str) -> tuple[list[str], list[list[str]]]:
    summary = result["summary"][key]
    head = ["p50 / p95", *summary]
    rows = []
    for piece, label in PIECES:
        cells = []
        for p in summary:
            s = summary[p]["pieces"][piece]
            cells.append(f"{_ms(s['p50'])} / {_ms(s['p95'])}")
        rows.append([label, *cells])
    return head, rows


def rich_table(title: str, head: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for i, col in enumerate(head):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |"]
    lines.append("| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _titles(result: dict[str, Any]) -> tuple[str, dict[str, str]]:
    n = result["settings"]["trials"]
    return (
        f"cold start, model at zero -> first answer, {n} trials per model and path (ms)",
        {
            key: f"{key}: where the time goes (ms; p50 / p95 of each piece on its own)"
            for key in result["summary"]
        },
    )


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    console.print(
        f"\n[bold]machine[/bold]: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']},"
        f" onnxruntime {m['packages']['onnxruntime']}, commit {result['git']['commit'][:7]}"
        f"{' (src modified)' if result['git']['src_dirty'] else ''}",
        highlight=False,
        soft_wrap=True,
    )
    t1, t2 = _titles(result)
    # Into a file or pipe rich would squeeze the tables into 80 columns.
    out = console if console.is_terminal else Console(width=120)
    out.print(rich_table(t1, *headline_rows(result)))
    markdown = [t1, markdown_table(*headline_rows(result))]
    for key, title in t2.items():
        out.print(rich_table(title, *breakdown_rows(result, key)))
        markdown += [title, markdown_table(*breakdown_rows(result, key))]
    for server in result["servers"]:
        c = server["cpu"]
        by_model = ", ".join(
            f"{k} {v['other_cores']:.2f}" for k, v in server["cpu_by_model"].items()
        )
        console.print(
            f"{server['server']}: {c['wall_s']:.0f} s, this benchmark {c['ours_cores']:.2f} cores,"
            f" other work {c['other_cores']:.2f} cores ({by_model}), stolen"
            f" {c['steal_cores']:.2f}",
            highlight=False,
            soft_wrap=True,
        )
    for key, by_path in result["summary"].items():
        for p, s in by_path.items():
            if s["failed"]:
                console.print(f"[red]{key} {p}: {s['failed']} failed[/red] {s['failure_reasons']}")
    return "\n\n".join(markdown)


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated subset of iris,minilm"
    )
    p.add_argument("--trials", type=int, default=20, help="timed trials per model and path [20]")
    p.add_argument("--warmup", type=int, default=2, help="untimed trials per model, path [2]")
    p.add_argument("--idle-timeout", type=float, default=0.5, help="deployments' idle s [0.5]")
    p.add_argument("--settle", type=float, default=0.2, help="sleep at zero before a trial [0.2]")
    p.add_argument(
        "--quiet-wait", type=float, default=0.0,
        help="wait up to S s before each server for other work to stop [0: do not]",
    )  # fmt: skip
    p.add_argument("--zero-timeout", type=float, default=30.0, help="max wait for zero [30]")
    p.add_argument(
        "--paths", default=",".join(PATHS), help="comma-separated subset of spawn,fork,snapshot"
    )
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "coldstart.json")
    args = p.parse_args(argv)
    args.paths = [x for x in PATHS if x in args.paths.split(",")]
    unknown = set(args.models.split(",")) - set(MODELS)
    args.models = [m for m in MODELS if m in args.models.split(",")]
    if args.trials < 1 or args.warmup < 0 or not args.paths or not args.models or unknown:
        p.error(
            "--trials must be >= 1, --warmup >= 0, --paths one or more of spawn,fork,snapshot,"
            " --models one or more of iris,minilm"
        )
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    models = [MODELS[k] for k in args.models]
    expected: dict[str, Expected] = {bm.key: REFERENCES[bm.key]() for bm in models}
    result: dict[str, Any] = {
        "benchmark": "coldstart",
        "created": utc_now(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "git": git_info(),
        "models": {
            bm.key: {
                "title": bm.title,
                "path": str(bm.artifact.relative_to(ROOT)),
                "bytes": artifact_bytes(bm.artifact),
                "input": bm.input,
                "expected": asdict(expected[bm.key]),  # type: ignore[call-overload]
                "targets_p95_ms": bm.targets_p95_ms,
            }
            for bm in models
        },
        "settings": {
            "models": args.models,
            "paths": args.paths,
            "trials": args.trials,
            "warmup": args.warmup,
            "idle_timeout_s": args.idle_timeout,
            "settle_s": args.settle,
            "quiet_wait_s": args.quiet_wait,
            "snapshot_memory_mb": "default (1024)",
        },
        "servers": [],
    }
    # One server with every instance spawned, one with the fork server (fork and snapshot).
    groups = [g for g in ([p for p in args.paths if p == "spawn"],
                          [p for p in args.paths if p != "spawn"]) if g]  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="zeroserve-bench-") as tmp,
        httpx.Client(timeout=120.0, trust_env=False) as client,  # no proxy for 127.0.0.1
    ):
        for group in groups:
            run_one = functools.partial(
                run_server, client, Path(tmp), group, models, expected, args
            )
            result["servers"].append(phase(f"zeroserve up: {', '.join(group)}", run_one))
    trials = [t for s in result["servers"] for t in s["trials"]]
    result["summary"] = {
        bm.key: {
            p: summarize_path([t for t in trials if t["model_key"] == bm.key and t["path"] == p])
            for p in args.paths
        }
        for bm in models
    }
    result["comparison"] = {bm.key: compare(bm, result["summary"][bm.key]) for bm in models}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def finish(result: dict[str, Any]) -> int:
        markdown = report(result)
        result["markdown"] = markdown
        write_json(args.out, no_nan(result), allow_nan=False)
        args.out.with_suffix(".md").write_text(markdown + "\n")
        console.print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
        summary = result["summary"].values()
        failed = sum(s["failed"] for by_path in summary for s in by_path.values())
        return 2 if failed else 0

    return run_bench(lambda: run(args), finish)


if __name__ == "__main__":
    sys.exit(main())
