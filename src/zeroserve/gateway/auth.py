"""Who is calling, and what they may do: API keys, roles, tenants and rate limits.

The middleware authenticates `Authorization: Bearer <key>` on every route but the health
probes, applies the tenant's and the key's rate limits (429 + `Retry-After`, and
`X-RateLimit-*` on every response), and leaves a `Principal` on the request. Handlers then ask
`model_for` / `require`. A model or job of another tenant is answered 404, exactly as one that
does not exist, so names do not leak. With auth off (`zeroserve up` on loopback without
`--auth`) every caller is the local admin of tenant `default`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zeroserve.gateway.errors import ApiError
from zeroserve.metering.audit_trail import LOCAL, Actor
from zeroserve.platform import NotFound, Platform
from zeroserve.registry import ModelRecord
from zeroserve.security import KeyRecord, KeyStore, RateLimiter, allowed, headers
from zeroserve.security.limits import LimitStore

__all__ = ["AuthMiddleware", "Principal", "Security", "model_for", "principal_of", "require"]

# Probes must work without a key (load balancers, Kubernetes).
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})


@dataclass(frozen=True)
class Principal:
    actor: Actor
    record: KeyRecord | None = None  # None: authentication is off; the local admin

    @property
    def tenant(self) -> str:
        return self.actor.tenant

    @property
    def admin(self) -> bool:
        return self.record is None or self.record.role == "admin"

    def may(self, action: str, *, model: str | None = None, tenant: str | None = None) -> bool:
        if self.record is None:
            return True
        return allowed(self.record, action, model=model, tenant=tenant)

    def sees_tenant(self, tenant: str) -> bool:
        return self.admin or tenant == self.tenant


LOCAL_PRINCIPAL = Principal(LOCAL)


@dataclass
class Security:
    """The gateway's security state: the key store, the limits and the limiter."""

    required: bool
    keys: KeyStore
    limits: LimitStore
    limiter: RateLimiter = field(default_factory=RateLimiter)

    @classmethod
    def open(cls, state_dir: Path, required: bool) -> Security:
        keys = KeyStore(state_dir / "keys.db")
        limits = LimitStore(state_dir / "keys.db")
        security = cls(required, keys, limits)
        for (scope, name), value in limits.all().items():
            security.limiter.set_limits(scope, name, value)
        return security

    def close(self) -> None:
        self.keys.close()
        self.limits.close()


def _reply(status: int, message: str, extra: dict[str, str]) -> tuple[Message, Message]:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    return (
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": body},
    )


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if kind.lower() == "bearer" else ""
    return None


class AuthMiddleware:
    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            scope.setdefault("state", {})["principal"] = LOCAL_PRINCIPAL
            await self.app(scope, receive, send)
            return
        principal = self._authenticate(scope)
        if principal is None:
            start, body = _reply(
                401,
                "an API key is required: send Authorization: Bearer <key>"
                " (zeroserve keys create, or --api-key / ZEROSERVE_API_KEY for the CLI)",
                {"WWW-Authenticate": 'Bearer realm="zeroserve"'},
            )
            await send(start)
            await send(body)
            return
        key = principal.record.prefix if principal.record else None
        decision = self.security.limiter.check(tenant=principal.tenant, key=key, now=time.time())
        limit_headers = headers(decision)
        if not decision.allowed:
            what = decision.source or "rate limit"
            start, body = _reply(429, f"{what} exceeded; retry after Retry-After", limit_headers)
            await send(start)
            await send(body)
            return
        scope.setdefault("state", {})["principal"] = principal
        if not limit_headers:
            await self.app(scope, receive, send)
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in limit_headers.items()]

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_limits)

    def _authenticate(self, scope: Scope) -> Principal | None:
        if not self.security.required:
            return LOCAL_PRINCIPAL
        token = _bearer(scope)
        if not token:
            return None
        record = self.security.keys.authenticate(token, now=time.time())
        if record is None:
            return None
        return Principal(Actor(record.tenant, record.prefix), record)


def principal_of(request: Request) -> Principal:
    principal: Principal = request.scope.get("state", {}).get("principal", LOCAL_PRINCIPAL)
    return principal


def require(request: Request, action: str) -> Principal:
    """The caller, if its role allows `action` at all (403 otherwise)."""
    principal = principal_of(request)
    if not principal.may(action):
        role = principal.record.role if principal.record else "admin"
        raise ApiError(403, f"a {role} key may not do {action}")
    return principal


def model_for(request: Request, platform: Platform, name: str, action: str) -> ModelRecord:
    """The model, if the caller may see it (404 otherwise, as for an unknown one) and may do
    `action` on it (403)."""
    principal = principal_of(request)
    try:
        record = platform.model(name)
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None
    if not principal.may("models.read", model=name, tenant=record.tenant):
        raise ApiError(404, f"model {name!r} not found")
    if not principal.may(action, model=name, tenant=record.tenant):
        role = principal.record.role if principal.record else "admin"
        raise ApiError(403, f"a {role} key may not do {action} on {name!r}")
    return record


def visible(principal: Principal, record: ModelRecord) -> bool:
    return principal.may("models.read", model=record.name, tenant=record.tenant)


def actor_of(request: Request) -> Actor:
    return principal_of(request).actor


def describe(principal: Principal) -> dict[str, Any]:
    record = principal.record
    return {
        "tenant": principal.tenant,
        "key": record.prefix if record else None,
        "role": record.role if record else "admin",
        "auth": record is not None,
    }
