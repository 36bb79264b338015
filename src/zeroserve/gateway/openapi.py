"""One OpenAPI 3.1 document for every route: V2, V1, the native API and operations.

Request and response schemas of the native API come from the pydantic specs (one source of
truth); the V2/V1 bodies are written out from the protocol documents.
"""

from __future__ import annotations

from typing import Any

from zeroserve import __version__
from zeroserve.spec import (
    DATATYPES,
    MODEL_NAME_PATTERN,
    DeployRequest,
    PrewarmRequest,
    TrafficSplit,
)

__all__ = ["DOCS_HTML", "errors_for", "json_ok", "op", "openapi_document", "ref"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "What was wrong."}},
}

_TENSOR_IN = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string", "enum": list(DATATYPES)},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "data": {"description": "Flat or nested row-major values (omit with binary data)."},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
        },
    },
}
_TENSOR_OUT = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "data": {"type": "array"},
        "parameters": {"type": "object"},
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_output": {"type": "boolean"}},
        },
        "inputs": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/components/schemas/TensorInput"},
        },
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "parameters": {
                        "type": "object",
                        "properties": {"binary_data": {"type": "boolean"}},
                    },
                },
            },
        },
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorOutput"}},
    },
}
_MODEL_METADATA = {
    "type": "object",
    "required": ["name", "versions", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": {"type": "object"}},
        "outputs": {"type": "array", "items": {"type": "object"}},
    },
}
_V1_REQUEST = {
    "type": "object",
    "description": "Row format ('instances') or columnar format ('inputs').",
    "properties": {"instances": {"type": "array", "minItems": 1}, "inputs": {}},
}
_V1_RESPONSE = {
    "type": "object",
    "properties": {"predictions": {"type": "array"}, "outputs": {}},
}
_MODEL_STATUS = {
    "type": "object",
    "required": ["name", "traffic", "instances", "versions"],
    "properties": {
        "name": {"type": "string"},
        "created_at": {"type": "number"},
        "traffic": {"type": "array", "items": {"$ref": "#/components/schemas/TrafficSplit"}},
        "instances": {"type": "integer", "description": "Live instances, all versions."},
        "versions": {"type": "array", "items": {"type": "object"}},
    },
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors_for(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed request or tensors that do not match the model",
        401: "No valid API key (auth is on): send Authorization: Bearer <key>",
        403: "The key's role may not do this",
        404: "Unknown model, version or route",
        405: "Method not allowed",
        409: "Conflict: a job not in a state that allows it, a model name another tenant owns",
        413: "Body over the size limit",
        415: "Content type cannot carry a tensor request",
        422: "Valid JSON that cannot be acted on (e.g. a model that fails to load)",
        429: "Queue full, or a rate limit or quota reached: come back after Retry-After",
        503: "No instance could serve in time (has Retry-After)",
        504: "The model did not answer within its timeout",
    }
    return {str(c): json_ok(ref("Error"), text[c]) for c in codes}


def op(
    summary: str,
    tag: str,
    ok: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    errors: tuple[int, ...] = (),
    params: tuple[str | dict[str, Any], ...] = (),
    ok_code: str = "200",
    public: bool = False,
) -> dict[str, Any]:
    # Every route but the health probes needs a key when auth is on, and is rate limited.
    always = () if public else (401, 403, 429)
    codes = sorted(set(errors) | set(always))
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {ok_code: ok, **errors_for(*codes)},
    }
    if public:
        op["security"] = []
    if params:
        op["parameters"] = [_PARAMS[p] if isinstance(p, str) else p for p in params]
    if body is not None:
        op["requestBody"] = body
    return op


_PARAMS = {
    "name": {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": MODEL_NAME_PATTERN},
    },
    "idempotency": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "A retried request with this key gets the first response (24 h).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
    "version": {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
    },
}

_INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": ref("InferRequest")},
        "application/octet-stream": {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "Binary tensor extension: JSON header of"
                " Inference-Header-Content-Length bytes, then tensor bytes.",
            }
        },
    },
}


def _paths() -> dict[str, Any]:
    infer_errors = (400, 404, 413, 415, 422, 429, 503, 504)
    infer_ok = json_ok(ref("InferResponse"), "Inference result")
    meta_ok = json_ok(ref("ModelMetadata"), "Model metadata")
    ready_ok = json_ok(
        {
            "type": "object",
            "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
        },
        "Deployed: the model answers (starting an instance when at zero)",
    )
    v2 = "Open Inference Protocol V2"
    return {
        "/v2/health/live": {"get": op("Server liveness", v2, json_ok({"type": "object", "properties": {"live": {"type": "boolean"}}}, "Live"), public=True)},
        "/v2/health/ready": {"get": op("Server readiness", v2, json_ok({"type": "object", "properties": {"ready": {"type": "boolean"}}}, "Ready"), public=True)},
        "/v2": {"get": op("Server metadata", v2, json_ok({"type": "object"}, "Name, version, extensions"))},
        "/v2/repository/index": {"post": op("Model repository index", v2, json_ok({"type": "array", "items": {"type": "object"}}, "Every deployed version"), body={"required": False, "content": {"application/json": {"schema": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}}, errors=(400,))},
        "/v2/models/{name}": {"get": op("Model metadata (traffic's latest version)", v2, meta_ok, errors=(404,), params=("name",))},
        "/v2/models/{name}/ready": {"get": op("Model readiness", v2, ready_ok, errors=(404,), params=("name",))},
        "/v2/models/{name}/infer": {"post": op("Infer (version chosen by the traffic policy)", v2, infer_ok, body=_INFER_BODY, errors=infer_errors, params=("name", "idempotency"))},
        "/v2/models/{name}/versions/{version}": {"get": op("Version metadata", v2, meta_ok, errors=(404,), params=("name", "version"))},
        "/v2/models/{name}/versions/{version}/ready": {"get": op("Version readiness", v2, ready_ok, errors=(404,), params=("name", "version"))},
        "/v2/models/{name}/versions/{version}/infer": {"post": op("Infer on one version", v2, infer_ok, body=_INFER_BODY, errors=infer_errors, params=("name", "version", "idempotency"))},
        "/": {"get": op("V1 server liveness", "V1", json_ok({"type": "object", "properties": {"status": {"type": "string"}}}, "alive"))},
        "/v1/models": {"get": op("V1 model list", "V1", json_ok({"type": "object", "properties": {"models": {"type": "array", "items": {"type": "string"}}}}, "Model names"))},
        "/v1/models/{name}": {"get": op("V1 model status", "V1", ready_ok, errors=(404,), params=("name",))},
        "/v1/models/{name}:predict": {"post": op("V1 predict", "V1", json_ok(_V1_RESPONSE, "Predictions"), body={"required": True, "content": {"application/json": {"schema": _V1_REQUEST}}}, errors=(400, 404, 413, 415, 422, 503, 504), params=("name", "idempotency"))},
        "/api/artifacts": {"put": op("Upload an artifact (raw bytes); content-addressed", "Native", json_ok({"type": "object", "properties": {"sha256": {"type": "string"}, "size": {"type": "integer"}}}, "Stored"), body={"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}, errors=(413,), ok_code="201")},
        "/api/models": {"get": op("List models with their status", "Native", json_ok({"type": "object", "properties": {"models": {"type": "array", "items": ref("ModelStatus")}}}, "Models"))},
        "/api/models/{name}": {
            "get": op("Model status: versions, traffic, live instances", "Native", json_ok(ref("ModelStatus"), "Status"), errors=(404,), params=("name",)),
            "delete": op("Remove a model, its versions and instances", "Native", json_ok({"type": "object", "properties": {"deleted": {"type": "string"}}}, "Removed"), errors=(404,), params=("name",)),
        },
        "/api/models/{name}/versions": {"post": op("Deploy a new immutable version", "Native", json_ok({"type": "object"}, "The new version"), body={"required": True, "content": {"application/json": {"schema": ref("DeployRequest")}}}, errors=(400, 404, 409, 413, 422), params=("name",), ok_code="201")},
        "/api/models/{name}/versions/{version}": {"get": op("One version's spec", "Native", json_ok({"type": "object"}, "Version"), errors=(404,), params=("name", "version"))},
        "/api/models/{name}/traffic": {"put": op("Set the traffic split", "Native", json_ok(ref("ModelStatus"), "Status"), body={"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["traffic"], "properties": {"traffic": {"type": "array", "items": ref("TrafficSplit")}}}}}}, errors=(400, 404, 422), params=("name",))},
        "/api/models/{name}/prewarm": {"post": op("Start instances now for a predictable peak", "Native", json_ok({"type": "object", "properties": {"model": {"type": "string"}, "version": {"type": "integer"}, "instances": {"type": "integer"}, "until": {"type": "number"}}}, "Instances serving"), body={"required": False, "content": {"application/json": {"schema": ref("PrewarmRequest")}}}, errors=(400, 404, 422), params=("name",))},
        "/metrics": {"get": op("Prometheus metrics", "Operations", {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}})},
        "/openapi.json": {"get": op("This document", "Operations", json_ok({"type": "object"}, "OpenAPI 3.1"))},
        "/docs": {"get": op("Interactive API docs", "Operations", {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}})},
    }  # fmt: skip


def openapi_document(auth: bool = True) -> dict[str, Any]:
    """The document; with `auth` off (a loopback platform run open) no route needs a key."""
    from zeroserve.gateway.openapi_admin import admin_paths
    from zeroserve.gateway.openapi_jobs import JOB_SCHEMAS, job_paths

    deploy = DeployRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = deploy.pop("$defs", {})
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "zeroserve",
            "version": __version__,
            "description": "Serverless inference: Open Inference Protocol V2, V1 and a native API.",
        },
        "paths": {**_paths(), **job_paths(), **admin_paths()},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (zeroserve keys create); required when auth is on.",
                }
            },
            "schemas": {
                "Error": _ERROR,
                "TensorInput": _TENSOR_IN,
                "TensorOutput": _TENSOR_OUT,
                "InferRequest": _INFER_REQUEST,
                "InferResponse": _INFER_RESPONSE,
                "ModelMetadata": _MODEL_METADATA,
                "ModelStatus": _MODEL_STATUS,
                "DeployRequest": deploy,
                "TrafficSplit": TrafficSplit.model_json_schema(),
                "PrewarmRequest": PrewarmRequest.model_json_schema(),
                **JOB_SCHEMAS,
                **defs,
            },
        },
    }
    if not auth:
        del doc["security"]
    return doc


# Swagger UI, loaded by the browser; the platform itself fetches nothing.
DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>zeroserve API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="ui"><p style="font-family:sans-serif;margin:2em">
The OpenAPI document is at <a href="/openapi.json">/openapi.json</a>.</p></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>if (window.SwaggerUIBundle) SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>
"""
