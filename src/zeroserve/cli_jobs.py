"""`zeroserve jobs | dead-letters | trigger`: asynchronous inference from the command line."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Column, Table

from zeroserve.client import ApiError, Client
from zeroserve.settings import default_url

__all__ = ["dead_letters_app", "jobs_app", "trigger_app"]

jobs_app = typer.Typer(
    help="Submit, read, list and cancel asynchronous jobs.", no_args_is_help=True
)
dead_letters_app = typer.Typer(
    help="Jobs that failed every attempt: list, requeue, delete.", no_args_is_help=True
)
trigger_app = typer.Typer(help="Turn new files in a folder or URI into jobs.", no_args_is_help=True)

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
UrlOption = Annotated[
    str, typer.Option("--url", help="Platform URL (env ZEROSERVE_URL).", show_default=False)
]
_FINISHED = ("succeeded", "dead", "cancelled")


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def _call(url: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    with Client(url or default_url()) as client:
        try:
            return fn(client, *args, **kwargs)
        except ApiError as exc:
            raise _fail(exc.message) from None


def _print(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def _body(data: str | None, file: Path | None, webhook: str | None, priority: int | None) -> bytes:
    if (data is None) == (file is None):
        raise _fail("give the request with --data JSON or --file FILE (or --file-dir DIR)")
    raw = file.read_text() if file is not None else str(data)
    if webhook is None and priority is None:
        return raw.encode()
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise _fail(f"the request is not valid JSON: {exc}") from None
    if webhook is not None:
        doc["webhook"] = webhook
    if priority is not None:
        doc["priority"] = priority
    return json.dumps(doc).encode()


def _table(jobs: list[dict[str, Any]]) -> Table:
    table = Table("model", "version", "status", "attempts", "created", "error")
    table.columns.insert(0, Column("id", no_wrap=True, min_width=32))  # ids are copied whole
    for j in jobs:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j["created_at"]))
        error = (j.get("error") or "")[:60]
        table.add_row(
            j["id"], j["model"], str(j["version"]), j["status"], str(j["attempts"]), created, error
        )
    return table


@jobs_app.command("submit")
def submit(
    name: str,
    data: Annotated[str | None, typer.Option(help="The V2 inference request (JSON).")] = None,
    file: Annotated[Path | None, typer.Option(help="A file holding the V2 request.")] = None,
    file_dir: Annotated[
        Path | None, typer.Option(help="Submit every matching file in this folder as a job.")
    ] = None,
    pattern: Annotated[str, typer.Option(help="Files taken from --file-dir.")] = "*.json",
    version: Annotated[int | None, typer.Option(help="A specific version.")] = None,
    webhook: Annotated[str | None, typer.Option(help="POST the result here when done.")] = None,
    priority: Annotated[int | None, typer.Option(help="Higher runs first (default 0).")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="A retried submit with this key makes no new job.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait until the job(s) finish.")] = False,
    url: UrlOption = "",
) -> None:
    """Submit a job (or a folder of them) and print its id."""
    if file_dir is not None:
        _submit_dir(name, file_dir, pattern, version, webhook, priority, wait, url)
        return
    body = _body(data, file, webhook, priority)
    job = _call(
        url, Client.submit_job, name, body, version=version, idempotency_key=idempotency_key
    )
    if wait:
        job = _wait_one(url, job["id"])
    _print(job)


def _wait_one(url: str, job_id: str) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = _call(url, Client.job, job_id)
        if job["status"] in _FINISHED:
            return job
        time.sleep(0.2)


def _submit_dir(
    name: str,
    folder: Path,
    pattern: str,
    version: int | None,
    webhook: str | None,
    priority: int | None,
    wait: bool,
    url: str,
) -> None:
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not files:
        raise _fail(f"no file in {folder} matches {pattern!r}")
    ids: dict[str, str] = {}
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Client(url or default_url()) as client, Progress(*columns, console=err) as progress:
        task = progress.add_task("submitting", total=len(files))
        for path in files:
            body = _body(None, path, webhook, priority)
            # The key is the file's name and content: running the command again (after an
            # interruption) submits only what is missing.
            key = f"file:{path.name}:{hashlib.sha256(body).hexdigest()[:32]}"
            try:
                job = client.submit_job(name, body, version=version, idempotency_key=key)
            except ApiError as exc:
                raise _fail(f"{path}: {exc.message}") from None
            ids[path.name] = job["id"]
            progress.advance(task)
        if wait:
            _wait_all(client, ids, progress)
    _print({"jobs": ids})


def _wait_all(client: Client, ids: dict[str, str], progress: Progress) -> None:
    task = progress.add_task("finished", total=len(ids))
    pending = dict(ids)
    outcome: dict[str, int] = {}
    while pending:
        for path, job_id in list(pending.items()):
            status = client.job(job_id)["status"]
            if status in _FINISHED:
                outcome[status] = outcome.get(status, 0) + 1
                del pending[path]
                progress.advance(task)
        if pending:
            time.sleep(0.2)
    progress.console.print(", ".join(f"{n} {s}" for s, n in sorted(outcome.items())))


@jobs_app.command("get")
def get(job_id: str, url: UrlOption = "") -> None:
    """A job's status, attempts, errors and (when done) result."""
    _print(_call(url, Client.job, job_id))


@jobs_app.command("ls")
def ls(
    model: Annotated[str | None, typer.Option(help="Only this model's jobs.")] = None,
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, ...")] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    url: UrlOption = "",
) -> None:
    """List jobs, newest first."""
    page = _call(url, Client.jobs, model=model, status=status, limit=limit, cursor=cursor)
    if as_json:
        _print(page)
        return
    console.print(_table(page["jobs"]))
    if page["next_cursor"] is not None:
        console.print(f"more: --cursor {page['next_cursor']}")


@jobs_app.command("cancel")
def cancel(job_id: str, url: UrlOption = "") -> None:
    """Cancel a job that has not started."""
    job = _call(url, Client.request, "DELETE", f"/api/jobs/{job_id}")
    console.print(f"job {job['id']} {job['status']}")


@dead_letters_app.command("ls")
def dead_ls(
    model: Annotated[str | None, typer.Option(help="Only this model's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with every error).")] = False,
    url: UrlOption = "",
) -> None:
    """Jobs that failed every attempt."""
    page = _call(url, Client.jobs, "/api/dead-letters", model=model, limit=500)
    if as_json:
        _print(page)
    else:
        console.print(_table(page["jobs"]))


@dead_letters_app.command("requeue")
def dead_requeue(job_id: str, url: UrlOption = "") -> None:
    """Queue a dead job again, with fresh attempts."""
    job = _call(url, Client.request, "POST", f"/api/dead-letters/{job_id}/requeue")
    console.print(f"job {job['id']} {job['status']}")


@dead_letters_app.command("rm")
def dead_rm(job_id: str, url: UrlOption = "") -> None:
    """Delete a dead job for good."""
    _call(url, Client.request, "DELETE", f"/api/dead-letters/{job_id}")
    console.print(f"deleted {job_id}")


def _location(raw: str) -> str:
    """A local folder becomes an absolute path (the platform may run elsewhere: then give a
    URI it can reach)."""
    return raw if "://" in raw else str(Path(raw).expanduser().resolve())


@trigger_app.command("add")
def trigger_add(
    name: str,
    watch: Annotated[str, typer.Option(help="Folder or fsspec URI to watch.")],
    pattern: Annotated[str, typer.Option(help="File names taken (fnmatch).")] = "*.json",
    output: Annotated[
        str | None, typer.Option(help="Folder or URI for <file>.result.json / .error.json.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model to run (default: NAME).")] = None,
    version: Annotated[int | None, typer.Option(help="A specific version.")] = None,
    url: UrlOption = "",
) -> None:
    """Each new file in WATCH matching PATTERN becomes a job of MODEL, once."""
    body = {
        "name": name,
        "model": model or name,
        "version": version,
        "watch": _location(watch),
        "pattern": pattern,
        "output": _location(output) if output else None,
    }
    trigger = _call(url, Client.request, "POST", "/api/triggers", json=body)
    console.print(
        f"trigger [bold]{trigger['name']}[/bold]: {trigger['watch']} -> {trigger['model']}"
    )


@trigger_app.command("ls")
def trigger_ls(url: UrlOption = "") -> None:
    """List triggers."""
    triggers = _call(url, Client.request, "GET", "/api/triggers")["triggers"]
    table = Table("name", "model", "watch", "pattern", "output")
    for t in triggers:
        table.add_row(t["name"], t["model"], t["watch"], t["pattern"], t["output"] or "")
    console.print(table)


@trigger_app.command("rm")
def trigger_rm(name: str, url: UrlOption = "") -> None:
    """Remove a trigger (files already taken stay recorded)."""
    _call(url, Client.request, "DELETE", f"/api/triggers/{name}")
    console.print(f"removed trigger {name}")
