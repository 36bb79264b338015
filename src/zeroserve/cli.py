"""`zeroserve up | deploy | ls | status | invoke | prewarm | simulate | rm`, and the
`jobs`, `dead-letters` and `trigger` groups (cli_jobs.py)."""

from __future__ import annotations

import json
import logging
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from zeroserve.cli_admin import audit_app, keys_app, limits_app, secrets_app
from zeroserve.cli_jobs import dead_letters_app, jobs_app, trigger_app
from zeroserve.client import ApiError, Client
from zeroserve.settings import Settings, default_state_dir, default_url
from zeroserve.spec import infer_runtime

app = typer.Typer(
    help="zeroserve: serverless inference you run yourself.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

UrlOption = Annotated[
    str, typer.Option("--url", help="Platform URL (env ZEROSERVE_URL).", show_default=False)
]


@app.callback()
def _options(
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="ZEROSERVE_API_KEY",
            help="API key sent by every command (env ZEROSERVE_API_KEY).",
            show_default=False,
        ),
    ] = None,
) -> None:
    if api_key:
        os.environ["ZEROSERVE_API_KEY"] = api_key  # what Client sends


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def _client(url: str | None) -> Client:
    return Client(url or default_url())


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Registry and artifacts live here (default: ~/.zeroserve)."),
    ] = None,
    max_body_mb: Annotated[
        int | None, typer.Option(help="Largest inference request body, MiB (default: 16).")
    ] = None,
    snapshot_memory: Annotated[
        int | None,
        typer.Option(help="MiB that snapshot templates may hold together (default: 1024)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning.")] = "info",
    auth: Annotated[
        bool, typer.Option("--auth", help="Require API keys on loopback too (always off it).")
    ] = False,
) -> None:
    """Run the platform in the foreground."""
    import uvicorn

    from zeroserve.gateway.app import create_app

    try:
        settings = Settings.from_env(
            state_dir=(state_dir or default_state_dir()).expanduser().resolve(),
            host=host,
            port=port,
            max_body_bytes=None if max_body_mb is None else max_body_mb * 1024 * 1024,
            snapshot_memory_mb=snapshot_memory,
            auth=True if auth else None,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    base = f"http://{host}:{port}"
    console.print(f"[bold]zeroserve[/bold] on {base}  (state: {settings.state_dir})")
    console.print(f"  API docs  {base}/docs   OpenAPI {base}/openapi.json   metrics {base}/metrics")
    if settings.auth_required:
        console.print("  auth ON: every route but /v2/health/* needs an API key")
        console.print(f"  first key: zeroserve keys bootstrap --state-dir {settings.state_dir}")
    else:
        console.print(
            "[bold red]  AUTH IS OFF[/bold red]: anyone who can reach this port can deploy, run"
            " and delete models. Fine for a laptop; use --auth (on by default off loopback)."
        )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def _load_spec_file(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise _fail(f"{path} must hold a mapping (name, artifact, runtime, scaling, ...)")
    artifact = doc.get("artifact")
    if isinstance(artifact, str) and "://" not in artifact:
        doc["artifact"] = str((path.parent / artifact).resolve())
    return doc


def _artifact_ref(client: Client, artifact: str) -> dict[str, Any]:
    local = Path(artifact).expanduser()
    if "://" in artifact and not artifact.startswith("file://"):
        return {"uri": artifact}
    if artifact.startswith("file://"):
        local = Path(artifact.removeprefix("file://"))
    if local.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            return _upload(client, _pack(local, Path(tmp)))
    if not local.is_file():
        raise _fail(f"artifact {artifact} is not a file or folder")
    return _upload(client, local)


def _pack(folder: Path, into: Path) -> Path:
    """A model folder as one tar: its regular files, with paths relative to it."""
    archive = into / f"{folder.resolve().name}.tar"
    with tarfile.open(archive, "w") as tf:
        for file in sorted(folder.rglob("*")):
            if file.is_symlink():
                raise _fail(f"{file} is a symbolic link; copy the file into the folder instead")
            if file.is_file():
                tf.add(file, arcname=str(file.relative_to(folder)), recursive=False)
    return archive


def _merged(base: Any, flags: dict[str, Any]) -> dict[str, Any]:
    """A spec file's section with the flags that were given laid over it."""
    return {**(base or {}), **{k: v for k, v in flags.items() if v is not None}}


def _folder_runtime(folder: Path) -> str | None:
    """A folder with model.py is a Python model; else the one model file inside decides."""
    folder = folder.expanduser()
    if not folder.is_dir():
        return None
    if (folder / "model.py").is_file():
        return "python"
    found = {infer_runtime(p.name) for p in folder.rglob("*") if p.is_file()} - {None}
    return found.pop() if len(found) == 1 else None


def _upload(client: Client, local: Path) -> dict[str, Any]:
    size = local.stat().st_size
    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), console=err, transient=True, disable=size < 8 * 1024 * 1024,
    ) as progress:  # fmt: skip
        task = progress.add_task(f"uploading {local.name}", total=size)
        uploaded = client.upload(local, lambda n: progress.advance(task, n))
    return {"sha256": uploaded["sha256"], "filename": local.name}


@app.command()
def deploy(
    name: Annotated[str | None, typer.Argument(help="Model name, e.g. iris.")] = None,
    path: Annotated[
        str | None,
        typer.Argument(help="Artifact file, model folder (sent as a tar), or s3:// gs:// URI."),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("-f", "--file", help="A deployment spec YAML.")
    ] = None,
    runtime: Annotated[str | None, typer.Option(help="onnx, sklearn, python or torch.")] = None,
    trust: Annotated[
        bool, typer.Option("--trust", help="Allow loading a pickle (sklearn).")
    ] = False,
    min_instances: Annotated[int | None, typer.Option(help="Warm instances kept [0].")] = None,
    max_instances: Annotated[int | None, typer.Option(help="Instance ceiling [4].")] = None,
    concurrency: Annotated[int | None, typer.Option(help="In-flight per instance [4].")] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Seconds idle before stop [300].")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per invocation [30].")] = None,
    memory: Annotated[int | None, typer.Option(help="Memory limit per instance, MB.")] = None,
    python_class: Annotated[
        str | None, typer.Option("--class", help="Python runtime class.")
    ] = None,
    snapshot: Annotated[
        bool, typer.Option("--snapshot", help="Keep a loaded template: ms cold starts.")
    ] = False,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Rows per batched model call [1: off].")
    ] = None,
    max_batch_delay_ms: Annotated[
        float | None, typer.Option(help="Wait for a batch to fill, ms [2].")
    ] = None,
    max_queue: Annotated[int | None, typer.Option(help="Requests that may wait [1024].")] = None,
    url: UrlOption = "",
) -> None:
    """Upload an artifact and create a new immutable version; prints the version."""
    doc: dict[str, Any] = _load_spec_file(file) if file else {}
    name = name or doc.pop("name", None)
    doc.pop("name", None)
    artifact = path or doc.pop("artifact", None)
    doc.pop("artifact", None)
    if not name or not artifact:
        raise _fail("give NAME and PATH, or -f spec.yaml with name and artifact")
    scaling = _merged(doc.pop("scaling", None), {
        "min_instances": min_instances, "max_instances": max_instances,
        "concurrency": concurrency, "idle_timeout_s": idle_timeout, "max_queue": max_queue,
    })  # fmt: skip
    doc["batching"] = _merged(doc.pop("batching", None), {
        "max_batch_size": max_batch_size, "max_batch_delay_ms": max_batch_delay_ms,
    })  # fmt: skip
    doc.update(_merged({}, {
        "runtime": runtime or doc.get("runtime") or _folder_runtime(Path(artifact.removeprefix("file://"))),
        "timeout_s": timeout, "memory_mb": memory, "python_class": python_class,
        "trust": trust or None, "snapshot": snapshot or None,
    }))  # fmt: skip
    with _client(url) as client:
        try:
            doc["artifact"] = _artifact_ref(client, artifact)
            doc["scaling"] = scaling
            result = client.deploy(name, doc)
        except ApiError as exc:
            raise _fail(exc.message) from None
    console.print(
        f"deployed [bold]{name}[/bold] version [bold]{result['version']}[/bold]"
        f" ({result['runtime']}, sha256:{result['artifact']['sha256'][:12]})"
    )


@app.command("ls")
def list_models(url: UrlOption = "") -> None:
    """List deployed models."""
    with _client(url) as client:
        try:
            models = client.models()
        except ApiError as exc:
            raise _fail(exc.message) from None
    table = Table("model", "versions", "traffic", "instances", "runtime")
    for m in models:
        traffic = ", ".join(f"v{t['version']}:{t['percent']}%" for t in m["traffic"])
        latest = m["versions"][-1] if m["versions"] else {}
        table.add_row(
            m["name"],
            str(len(m["versions"])),
            traffic,
            str(m["instances"]),
            latest.get("runtime", ""),
        )
    console.print(table)


@app.command()
def status(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
    url: UrlOption = "",
) -> None:
    """Versions, traffic and live instances of one model."""
    with _client(url) as client:
        try:
            doc = client.status(name)
        except ApiError as exc:
            raise _fail(exc.message) from None
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    traffic = ", ".join(f"v{t['version']}:{t['percent']}%" for t in doc["traffic"])
    console.print(f"[bold]{doc['name']}[/bold]  traffic {traffic}  instances {doc['instances']}")
    table = Table("version", "runtime", "instances", "starting", "queued", "min/max", "artifact")
    for v in doc["versions"]:
        s = v["scaling"]
        table.add_row(
            str(v["version"]), v["runtime"], str(v["instances"]), str(v["starting"]),
            str(v["queued"]), f"{s['min_instances']}/{s['max_instances']}",
            f"{v['artifact']['filename']} sha256:{v['artifact']['sha256'][:12]}",
        )  # fmt: skip
    console.print(table)


@app.command()
def invoke(
    name: str,
    data: Annotated[
        str, typer.Option(help="JSON body (V2 'inputs' tensors or V1 'instances'), or @file.")
    ],
    version: Annotated[int | None, typer.Option(help="A specific version (V2 only).")] = None,
    url: UrlOption = "",
) -> None:
    """Run one inference and print the response."""
    raw = Path(data[1:]).read_text() if data.startswith("@") else data
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _fail(f"--data is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _fail("--data must be a JSON object")
    with _client(url) as client:
        try:
            result = client.invoke(name, body, version)
        except ApiError as exc:
            raise _fail(exc.message) from None
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


@app.command()
def prewarm(
    name: str,
    instances: Annotated[int, typer.Option(help="Instances to start now.")] = 1,
    duration: Annotated[
        float, typer.Option("--for", help="Seconds to keep them (then idle timeout applies).")
    ] = 600.0,
    url: UrlOption = "",
) -> None:
    """Start instances now, ahead of a predictable peak."""
    with _client(url) as client:
        try:
            result = client.request(
                "POST",
                f"/api/models/{name}/prewarm",
                json={"instances": instances, "duration_s": duration},
            )
        except ApiError as exc:
            raise _fail(exc.message) from None
    console.print(
        f"[bold]{name}[/bold] v{result['version']}: {result['instances']} instance(s) warm"
        f" for {duration:g} s"
    )


@app.command()
def simulate(
    trace: Annotated[Path, typer.Argument(help="CSV: arrival_s[,service_s] per request.")],
    spec: Annotated[Path, typer.Option(help="Deployment spec YAML (scaling, memory_mb).")],
    start_time: Annotated[float, typer.Option(help="Seconds an instance takes to start.")] = 0.05,
    service_time: Annotated[
        float, typer.Option(help="Seconds per request when the trace has none.")
    ] = 0.005,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Predict cold starts, queueing, instances and cost of a scaling policy on a trace."""
    from pydantic import ValidationError

    from zeroserve.scaling.simulator import read_trace
    from zeroserve.scaling.simulator import simulate as run_simulation
    from zeroserve.spec import ScalingPolicy

    doc = _load_spec_file(spec)
    try:
        policy = ScalingPolicy.model_validate(doc.get("scaling") or {})
        arrivals = read_trace(trace)
    except (ValidationError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    memory_mb = int(doc.get("memory_mb") or 512)
    with Progress(console=err, transient=True) as progress:
        progress.add_task(f"simulating {len(arrivals)} requests", total=None)
        report = run_simulation(
            arrivals, policy, start_s=start_time, service_s=service_time, memory_mb=memory_mb
        )
    duration = max((a.time_s for a in arrivals), default=0.0) + policy.idle_timeout_s
    always_on = report.peak_instances * duration * memory_mb / 1024
    saving = 1 - report.gb_seconds / always_on if always_on else 0.0
    summary = {
        "requests": report.requests,
        "cold_starts": report.cold_starts,
        "peak_instances": report.peak_instances,
        "queue_delay_ms": {f"p{q}": report.percentile(report.queue_delays_s, q) * 1e3
                           for q in (50, 95, 99)},
        "latency_ms": {f"p{q}": report.percentile(report.latencies_s, q) * 1e3
                       for q in (50, 95, 99)},
        "instance_seconds": report.instance_seconds,
        "gb_seconds": report.gb_seconds,
        "always_on_gb_seconds": always_on,
        "saving_vs_always_on": saving,
    }  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    table = Table("what", "predicted", title=f"{trace.name} with {spec.name}")
    table.add_row("requests", str(summary["requests"]))
    table.add_row("cold starts", str(summary["cold_starts"]))
    table.add_row("peak instances", str(summary["peak_instances"]))
    for key in ("queue_delay_ms", "latency_ms"):
        values = summary[key]
        assert isinstance(values, dict)
        table.add_row(key.replace("_", " "), " / ".join(f"{k} {v:.1f}" for k, v in values.items()))
    table.add_row("instance-seconds", f"{report.instance_seconds:.0f}")
    table.add_row("GB-seconds", f"{report.gb_seconds:.0f}")
    table.add_row(
        "vs always-on at peak",
        f"{always_on:.0f} GB-s: {100 * saving:.0f} % fewer",
    )
    console.print(table)


@app.command("rm")
def remove(name: str, url: UrlOption = "") -> None:
    """Remove a model with all its versions and instances."""
    with _client(url) as client:
        try:
            client.remove(name)
        except ApiError as exc:
            raise _fail(exc.message) from None
    console.print(f"removed [bold]{name}[/bold]")


app.add_typer(jobs_app, name="jobs")
app.add_typer(keys_app, name="keys")
app.add_typer(secrets_app, name="secrets")
app.add_typer(limits_app, name="limits")
app.add_typer(audit_app, name="audit")
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(trigger_app, name="trigger")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
