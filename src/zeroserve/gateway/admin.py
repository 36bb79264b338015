"""Keys, secrets, limits and the audit log over HTTP (admins and deployers)."""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from zeroserve.gateway.auth import Security, describe, principal_of, require
from zeroserve.gateway.errors import ApiError
from zeroserve.gateway.native import json_model
from zeroserve.gateway.responses import json_response, platform_of
from zeroserve.metering.audit_trail import Actor
from zeroserve.security import KeyRecord, KeyStoreError, Limits, SecretsError, validate_tenant
from zeroserve.security.secrets import validate_secret_name
from zeroserve.spec import MODEL_NAME_PATTERN

__all__ = ["routes"]


def security_of(request: Request) -> Security:
    security: Security = request.app.state.security
    return security


def key_view(record: KeyRecord) -> dict[str, Any]:
    view = asdict(record)
    view["role"] = str(record.role)
    view["models"] = list(record.models) if record.models is not None else None
    return view


async def whoami(request: Request) -> Response:
    return json_response(describe(principal_of(request)))


class KeyRequest(BaseModel):
    tenant: str = Field("default", max_length=63)
    role: Literal["admin", "deployer", "invoker"]
    models: list[str] | None = Field(None, max_length=1000)
    expires_in_s: float | None = Field(None, gt=0, le=10 * 365 * 24 * 3600)
    description: str = Field("", max_length=200)


async def create_key(request: Request) -> Response:
    require(request, "keys.manage")
    body = await json_model(request, KeyRequest)
    try:
        validate_tenant(body.tenant)
        for model in body.models or []:
            if not _valid_model_name(model):
                raise ValueError(f"model name {model!r} must match {MODEL_NAME_PATTERN}")
        plaintext, record = security_of(request).keys.create(
            body.tenant, body.role, now=time.time(), models=body.models,
            expires_in_s=body.expires_in_s, description=body.description,
        )  # fmt: skip
    except (ValueError, KeyStoreError) as exc:
        raise ApiError(422, str(exc)) from None
    detail = {"prefix": record.prefix, "tenant": record.tenant, "role": str(record.role)}
    await _audit(request, "key.create", record.prefix, detail, tenant=record.tenant)
    return json_response({"key": plaintext, **key_view(record)}, status=201)


def _valid_model_name(name: str) -> bool:
    return re.fullmatch(MODEL_NAME_PATTERN, name) is not None


async def list_keys(request: Request) -> Response:
    require(request, "keys.manage")
    records = security_of(request).keys.list(request.query_params.get("tenant"))
    return json_response({"keys": [key_view(r) for r in records]})


async def revoke_key(request: Request) -> Response:
    require(request, "keys.manage")
    prefix = request.path_params["prefix"]
    try:
        record = security_of(request).keys.revoke(prefix, now=time.time())
    except KeyStoreError as exc:
        raise ApiError(404, str(exc)) from None
    await _audit(request, "key.revoke", prefix, {"tenant": record.tenant}, tenant=record.tenant)
    return json_response(key_view(record))


class SecretBody(BaseModel):
    value: str = Field(max_length=64 * 1024)


def _secrets(request: Request) -> Any:
    store = platform_of(request).secrets
    if store is None:
        raise ApiError(
            503,
            "secrets need a key: start the platform with ZEROSERVE_SECRETS_KEY or"
            " ZEROSERVE_SECRETS_KEY_FILE (zeroserve secrets keygen PATH makes one)",
        )
    return store


async def set_secret(request: Request) -> Response:
    principal = require(request, "models.deploy")
    name = request.path_params["name"]
    body = await json_model(request, SecretBody)
    try:
        validate_secret_name(name)
        _secrets(request).set(principal.tenant, name, body.value, now=time.time())
    except (ValueError, SecretsError) as exc:
        raise ApiError(422, str(exc)) from None
    await _audit(request, "secret.set", name)  # the name, never the value
    return json_response({"name": name, "tenant": principal.tenant})


async def list_secrets(request: Request) -> Response:
    principal = require(request, "models.deploy")
    return json_response({"secrets": _secrets(request).names(principal.tenant)})


async def delete_secret(request: Request) -> Response:
    principal = require(request, "models.deploy")
    name = request.path_params["name"]
    if not _secrets(request).delete(principal.tenant, name):
        raise ApiError(404, f"no secret {name!r}")
    await _audit(request, "secret.delete", name)
    return json_response({"deleted": name})


class LimitsBody(BaseModel):
    rate_per_s: float | None = Field(None, gt=0, le=1_000_000)
    burst: int | None = Field(None, ge=1, le=10_000_000)
    daily_quota: int | None = Field(None, ge=1, le=10_000_000_000)


async def set_limits(request: Request) -> Response:
    require(request, "tenants.manage")
    scope, name = request.path_params["scope"], request.path_params["name"]
    if scope not in ("tenant", "key"):
        raise ApiError(404, f"no limits scope {scope!r}: tenant or key")
    body = await json_model(request, LimitsBody)
    try:
        limits = Limits(body.rate_per_s, body.burst, body.daily_quota)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    security = security_of(request)
    security.limits.set(scope, name, limits)
    security.limiter.set_limits(scope, name, limits)
    await _audit(request, "limits.set", f"{scope}:{name}", body.model_dump())
    return json_response({"scope": scope, "name": name, **body.model_dump()})


async def clear_limits(request: Request) -> Response:
    require(request, "tenants.manage")
    scope, name = request.path_params["scope"], request.path_params["name"]
    if scope not in ("tenant", "key"):
        raise ApiError(404, f"no limits scope {scope!r}: tenant or key")
    security = security_of(request)
    security.limits.set(scope, name, None)
    security.limiter.set_limits(scope, name, None)
    await _audit(request, "limits.clear", f"{scope}:{name}")
    return json_response({"scope": scope, "name": name, "cleared": True})


async def list_limits(request: Request) -> Response:
    require(request, "tenants.manage")
    items = security_of(request).limits.all().items()
    return json_response(
        {"limits": [{"scope": s, "name": n, **asdict(v)} for (s, n), v in sorted(items)]}
    )


def _number(request: Request, name: str, default: float | None) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ApiError(400, f"{name} {raw!r} must be a non-negative number")
    return value


async def audit_list(request: Request) -> Response:
    principal = require(request, "audit.read")
    tenant = request.query_params.get("tenant")
    if not principal.admin:
        tenant = principal.tenant  # a deployer reads its own tenant's trail only
    limit = _number(request, "limit", 100)
    after = _number(request, "after", 0)
    try:
        entries = platform_of(request).audit.log.list(
            since=_number(request, "since", None), tenant=tenant,
            action=request.query_params.get("action"), limit=int(limit or 100),
            after_seq=int(after or 0),
        )  # fmt: skip
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return json_response({"entries": [asdict(e) for e in entries]})


async def audit_verify(request: Request) -> Response:
    require(request, "keys.manage")
    result = await asyncio.to_thread(platform_of(request).audit.log.verify)
    return json_response(asdict(result))


async def _audit(
    request: Request,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
    *,
    tenant: str | None = None,
) -> None:
    """Record an administrative action under the tenant it concerns (the caller's, or the
    one a key was made for), with the calling key as the actor."""
    actor = principal_of(request).actor
    if tenant is not None:
        actor = Actor(tenant, actor.name)
    await asyncio.to_thread(platform_of(request).audit.record, actor, action, target, detail)


routes = [
    Route("/api/whoami", whoami, methods=["GET"]),
    Route("/api/keys", create_key, methods=["POST"]),
    Route("/api/keys", list_keys, methods=["GET"]),
    Route("/api/keys/{prefix}", revoke_key, methods=["DELETE"]),
    Route("/api/secrets", list_secrets, methods=["GET"]),
    Route("/api/secrets/{name}", set_secret, methods=["PUT"]),
    Route("/api/secrets/{name}", delete_secret, methods=["DELETE"]),
    Route("/api/limits", list_limits, methods=["GET"]),
    Route("/api/limits/{scope}/{name}", set_limits, methods=["PUT"]),
    Route("/api/limits/{scope}/{name}", clear_limits, methods=["DELETE"]),
    Route("/api/audit", audit_list, methods=["GET"]),
    Route("/api/audit/verify", audit_verify, methods=["GET"]),
]
