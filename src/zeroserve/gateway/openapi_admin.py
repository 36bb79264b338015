"""The OpenAPI part for keys, secrets, limits and the audit log."""

from __future__ import annotations

from typing import Any

from zeroserve.gateway.openapi import json_ok, op

__all__ = ["admin_paths"]

_TAG = "Administration"

_KEY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "prefix": {"type": "string"},
        "tenant": {"type": "string"},
        "role": {"type": "string", "enum": ["admin", "deployer", "invoker"]},
        "models": {"type": ["array", "null"], "items": {"type": "string"}},
        "created_at": {"type": "number"},
        "expires_at": {"type": ["number", "null"]},
        "revoked_at": {"type": ["number", "null"]},
        "last_used_at": {"type": ["number", "null"]},
        "description": {"type": "string"},
    },
}
_KEY_REQUEST = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "tenant": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$", "default": "default"},
        "role": {"type": "string", "enum": ["admin", "deployer", "invoker"]},
        "models": {"type": ["array", "null"], "items": {"type": "string"}, "maxItems": 1000},
        "expires_in_s": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 315360000},
        "description": {"type": "string", "maxLength": 200},
    },
}
_LIMITS = {
    "type": "object",
    "properties": {
        "rate_per_s": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1000000},
        "burst": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000000},
        "daily_quota": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000000000},
    },
}
_ENTRY = {
    "type": "object",
    "properties": {
        "seq": {"type": "integer"},
        "ts": {"type": "number"},
        "tenant": {"type": "string"},
        "actor": {"type": "string"},
        "action": {"type": "string"},
        "target": {"type": "string"},
        "detail": {"type": "object"},
        "prev_hash": {"type": "string"},
        "hash": {"type": "string"},
    },
}


def _path(name: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def admin_paths() -> dict[str, Any]:
    key_created = json_ok(
        {
            **_KEY,
            "properties": {
                **_KEY["properties"],
                "key": {"type": "string", "description": "Shown once"},
            },
        },
        "The key (shown once) and its record",
    )
    scope = _path("scope", "^(tenant|key)$")
    secret_name = _path("name", "^[A-Z_][A-Z0-9_]{0,63}$")
    return {
        "/api/whoami": {"get": op("The caller: tenant, key prefix, role", _TAG, json_ok(_obj(tenant={"type": "string"}, key={"type": ["string", "null"]}, role={"type": "string"}, auth={"type": "boolean"}), "Caller"))},
        "/api/keys": {
            "post": op("Create an API key (admin)", _TAG, key_created, body=body(_KEY_REQUEST), errors=(400, 422), ok_code="201"),
            "get": op("List keys: prefixes, roles, last use (admin)", _TAG, json_ok(_obj(keys={"type": "array", "items": _KEY}), "Keys"), params=(_query("tenant", {"type": "string"}),)),
        },
        "/api/keys/{prefix}": {"delete": op("Revoke a key (admin); effective at once", _TAG, json_ok(_KEY, "Revoked"), errors=(404,), params=(_path("prefix"),))},
        "/api/secrets": {"get": op("Names of the tenant's secrets (never values)", _TAG, json_ok(_obj(secrets={"type": "array", "items": {"type": "string"}}), "Names"), errors=(503,))},
        "/api/secrets/{name}": {
            "put": op("Set a secret (encrypted at rest)", _TAG, json_ok(_obj(name={"type": "string"}, tenant={"type": "string"}), "Set"), body=body({"type": "object", "required": ["value"], "properties": {"value": {"type": "string", "maxLength": 65536}}}), errors=(400, 422, 503), params=(secret_name,)),
            "delete": op("Delete a secret", _TAG, json_ok(_obj(deleted={"type": "string"}), "Deleted"), errors=(404, 503), params=(secret_name,)),
        },
        "/api/limits": {"get": op("Rate limits and quotas set (admin)", _TAG, json_ok(_obj(limits={"type": "array", "items": _LIMITS}), "Limits"))},
        "/api/limits/{scope}/{name}": {
            "put": op("Set a tenant's or key's rate limit and daily quota (admin)", _TAG, json_ok(_LIMITS, "Set"), body=body(_LIMITS), errors=(400, 404, 422), params=(scope, _path("name"))),
            "delete": op("Back to the default limits (admin)", _TAG, json_ok(_obj(cleared={"type": "boolean"}), "Cleared"), errors=(404,), params=(scope, _path("name"))),
        },
        "/api/audit": {"get": op("Audit log entries in order (admin: all; deployer: its tenant)", _TAG, json_ok(_obj(entries={"type": "array", "items": _ENTRY}), "Entries"), errors=(400,), params=(_query("since", {"type": "number"}), _query("tenant", {"type": "string"}), _query("action", {"type": "string"}), _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000}), _query("after", {"type": "integer", "minimum": 0})))},
        "/api/audit/verify": {"get": op("Check the audit log's hash chain (admin)", _TAG, json_ok(_obj(ok={"type": "boolean"}, rows_checked={"type": "integer"}, first_bad_seq={"type": ["integer", "null"]}, reason={"type": "string"}), "Result"))},
    }  # fmt: skip
