"""`zeroserve keys | secrets | limits | audit`: who may do what, and what was done."""

from __future__ import annotations

import getpass
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from zeroserve.client import ApiError, Client
from zeroserve.security import AuditLog, KeyStore, KeyStoreError, parse_duration
from zeroserve.security.secrets import generate_key_file
from zeroserve.settings import default_state_dir, default_url

__all__ = ["audit_app", "keys_app", "limits_app", "secrets_app"]

keys_app = typer.Typer(help="API keys: bootstrap, create, list, revoke.", no_args_is_help=True)
secrets_app = typer.Typer(help="Secrets, encrypted at rest, for instances.", no_args_is_help=True)
limits_app = typer.Typer(help="Rate limits and daily quotas.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
UrlOption = Annotated[
    str, typer.Option("--url", help="Platform URL (env ZEROSERVE_URL).", show_default=False)
]
StateDirOption = Annotated[
    Path | None, typer.Option(help="The platform's state dir (default: ~/.zeroserve).")
]


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def _call(url: str, method: str, path: str, **kwargs: Any) -> Any:
    with Client(url or default_url()) as client:
        try:
            return client.request(method, path, **kwargs)
        except ApiError as exc:
            raise _fail(exc.message) from None


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


def _show_key(key: str) -> None:
    console.print(f"[bold]{key}[/bold]", highlight=False)
    err.print("Store it now: it is shown once, and only a hash of it is kept.")


@keys_app.command("bootstrap")
def keys_bootstrap(state_dir: StateDirOption = None) -> None:
    """Create the first admin key, on the machine that holds the state (printed once)."""
    directory = (state_dir or default_state_dir()).expanduser()
    store = KeyStore(directory / "keys.db")
    try:
        key, record = store.bootstrap(now=time.time())
    except KeyStoreError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    err.print(f"admin key {record.prefix} for tenant {record.tenant}:")
    _show_key(key)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The key's tenant (created on first use).")],
    role: Annotated[str, typer.Option(help="admin, deployer or invoker.")],
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models it may use (default: all).")
    ] = None,
    expires: Annotated[str | None, typer.Option(help="Lifetime, e.g. 30d, 12h.")] = None,
    description: Annotated[str, typer.Option(help="What the key is for.")] = "",
    url: UrlOption = "",
) -> None:
    """Create a key (admin); it is printed once."""
    body: dict[str, Any] = {"tenant": tenant, "role": role, "description": description}
    if models:
        body["models"] = [m.strip() for m in models.split(",") if m.strip()]
    if expires:
        try:
            body["expires_in_s"] = parse_duration(expires)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    created = _call(url, "POST", "/api/keys", json=body)
    err.print(f"{created['role']} key {created['prefix']} for tenant {created['tenant']}:")
    _show_key(created["key"])


@keys_app.command("ls")
def keys_ls(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    url: UrlOption = "",
) -> None:
    """Keys by prefix, with role, models and last use (admin)."""
    keys = _call(url, "GET", "/api/keys", params={"tenant": tenant} if tenant else {})["keys"]
    if as_json:
        sys.stdout.write(json.dumps(keys, indent=2) + "\n")
        return
    table = Table("prefix", "tenant", "role", "models", "created", "expires", "last used", "state")
    now = time.time()
    for k in keys:
        state = "revoked" if k["revoked_at"] else (
            "expired" if k["expires_at"] and k["expires_at"] <= now else "active"
        )  # fmt: skip
        table.add_row(
            k["prefix"], k["tenant"], k["role"], ",".join(k["models"] or ["*"]),
            _when(k["created_at"]), _when(k["expires_at"]), _when(k["last_used_at"]), state,
        )  # fmt: skip
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(prefix: str, url: UrlOption = "") -> None:
    """Revoke a key; it stops working at once."""
    _call(url, "DELETE", f"/api/keys/{prefix}")
    console.print(f"revoked {prefix}")


@secrets_app.command("keygen")
def secrets_keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the key (outside the state dir).")],
    state_dir: StateDirOption = None,
) -> None:
    """Write a new secrets key file (mode 0600), for ZEROSERVE_SECRETS_KEY_FILE."""
    try:
        written = generate_key_file(path, state_dir=(state_dir or default_state_dir()).expanduser())
    except Exception as exc:
        raise _fail(str(exc)) from None
    console.print(f"wrote {written}; start the platform with ZEROSERVE_SECRETS_KEY_FILE={written}")


@secrets_app.command("set")
def secrets_set(
    name: str,
    from_file: Annotated[
        Path | None, typer.Option(help="Read the value from this file (default: prompt).")
    ] = None,
    url: UrlOption = "",
) -> None:
    """Store a secret for your tenant; the value is read from a prompt, a file or stdin."""
    if from_file is not None:
        value = from_file.read_text().rstrip("\n")
    elif sys.stdin.isatty():
        value = getpass.getpass(f"value of {name}: ")
    else:
        value = sys.stdin.read().rstrip("\n")
    result = _call(url, "PUT", f"/api/secrets/{name}", json={"value": value})
    console.print(f"secret {result['name']} set for tenant {result['tenant']}")


@secrets_app.command("ls")
def secrets_ls(url: UrlOption = "") -> None:
    """Names of your tenant's secrets (values are never shown)."""
    for name in _call(url, "GET", "/api/secrets")["secrets"]:
        console.print(name)


@secrets_app.command("rm")
def secrets_rm(name: str, url: UrlOption = "") -> None:
    """Delete a secret."""
    _call(url, "DELETE", f"/api/secrets/{name}")
    console.print(f"deleted {name}")


@limits_app.command("set")
def limits_set(
    scope: Annotated[str, typer.Argument(help="tenant or key.")],
    name: Annotated[str, typer.Argument(help="The tenant's name or the key's prefix.")],
    rps: Annotated[float | None, typer.Option(help="Requests per second (token bucket).")] = None,
    burst: Annotated[int | None, typer.Option(help="Bucket size: requests at once.")] = None,
    daily: Annotated[int | None, typer.Option(help="Requests per UTC day.")] = None,
    url: UrlOption = "",
) -> None:
    """Set a tenant's or key's limits (admin); over them, requests get 429."""
    if rps is not None and burst is None:
        burst = max(1, int(rps))
    body = {"rate_per_s": rps, "burst": burst, "daily_quota": daily}
    _call(url, "PUT", f"/api/limits/{scope}/{name}", json=body)
    console.print(
        f"limits of {scope} {name}: {rps or '-'} req/s, burst {burst or '-'}, {daily or '-'}/day"
    )


@limits_app.command("rm")
def limits_rm(scope: str, name: str, url: UrlOption = "") -> None:
    """Back to the default limits (admin)."""
    _call(url, "DELETE", f"/api/limits/{scope}/{name}")
    console.print(f"limits of {scope} {name} cleared")


@limits_app.command("ls")
def limits_ls(url: UrlOption = "") -> None:
    """Limits set (admin)."""
    table = Table("scope", "name", "req/s", "burst", "per day")
    for item in _call(url, "GET", "/api/limits")["limits"]:
        table.add_row(
            item["scope"], item["name"], str(item["rate_per_s"] or "-"),
            str(item["burst"] or "-"), str(item["daily_quota"] or "-"),
        )  # fmt: skip
    console.print(table)


def _since(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return time.time() - parse_duration(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            raise _fail(f"--since {raw!r}: a duration (1h, 7d) or a unix time") from None


@audit_app.command("ls")
def audit_ls(
    since: Annotated[
        str | None, typer.Option(help="A duration back (1h, 7d) or unix time.")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. model.deploy, key.create.")] = None,
    limit: Annotated[int, typer.Option(help="Entries.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    url: UrlOption = "",
) -> None:
    """Who did what, oldest first."""
    params = {"since": _since(since), "tenant": tenant, "action": action, "limit": limit}
    query = {k: v for k, v in params.items() if v is not None}
    entries = _call(url, "GET", "/api/audit", params=query)["entries"]
    if as_json:
        sys.stdout.write(json.dumps(entries, indent=2) + "\n")
        return
    table = Table("seq", "time", "tenant", "actor", "action", "target", "detail")
    for e in entries:
        detail = json.dumps(e["detail"], separators=(",", ":"))
        table.add_row(
            str(e["seq"]), _when(e["ts"]), e["tenant"], e["actor"], e["action"], e["target"],
            detail[:80],
        )  # fmt: skip
    console.print(table)


@audit_app.command("verify")
def audit_verify(
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Verify the file directly (on the machine that holds the state)."),
    ] = None,
    url: UrlOption = "",
) -> None:
    """Walk the hash chain: a removed or edited row is reported (exit 1)."""
    if state_dir is not None:
        log = AuditLog(state_dir.expanduser() / "audit.db")
        try:
            result = asdict(log.verify())
        finally:
            log.close()
    else:
        result = _call(url, "GET", "/api/audit/verify")
    if not result["ok"]:
        raise _fail(f"audit log damaged at row {result['first_bad_seq']}: {result['reason']}")
    console.print(f"audit log intact: {result['rows_checked']} rows")
