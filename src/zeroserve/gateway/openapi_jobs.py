"""The OpenAPI part for asynchronous jobs, dead letters and triggers."""

from __future__ import annotations

from typing import Any

from zeroserve.gateway.openapi import json_ok, op, ref
from zeroserve.jobs.queue import STATUSES
from zeroserve.spec import MODEL_NAME_PATTERN

__all__ = ["JOB_SCHEMAS", "job_paths"]

_TAG = "Jobs"

_ATTEMPT_ERROR = {
    "type": "object",
    "properties": {
        "attempt": {"type": "integer"},
        "at": {"type": "number"},
        "error": {"type": "string"},
    },
}
_DELIVERY = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["webhook", "output"]},
        "target": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
        "attempts": {"type": "integer"},
        "last_error": {"type": ["string", "null"]},
        "delivered_at": {"type": ["number", "null"]},
        "next_at": {"type": ["number", "null"]},
    },
}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_JOB = {
    "type": "object",
    "required": ["id", "model", "version", "status", "attempts"],
    "properties": {
        "id": {"type": "string"},
        "model": {"type": "string"},
        "version": {"type": "integer"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "priority": {"type": "integer"},
        "attempts": {"type": "integer"},
        "max_attempts": {"type": "integer"},
        "created_at": {"type": "number"},
        "started_at": _NUMBER_OR_NULL,
        "finished_at": _NUMBER_OR_NULL,
        "expires_at": _NUMBER_OR_NULL,
        "next_attempt_at": _NUMBER_OR_NULL,
        "idempotency_key": {"type": ["string", "null"]},
        "source": {"type": ["string", "null"], "description": "The trigger file, if any."},
        "error": {"type": ["string", "null"]},
        "errors": {"type": "array", "items": _ATTEMPT_ERROR},
        "webhook": {"type": ["string", "null"]},
        "deliveries": {"type": "array", "items": _DELIVERY},
        "result": {
            "description": "The V2 inference response once succeeded (GET /api/jobs/{id}).",
            "anyOf": [ref("InferResponse"), {"type": "null"}],
        },
    },
}
_JOB_REQUEST = {
    "allOf": [
        ref("InferRequest"),
        {
            "type": "object",
            "properties": {
                "webhook": {"type": "string", "format": "uri", "description": "POSTed when done."},
                "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
            },
        },
    ]
}
_TRIGGER = {
    "type": "object",
    "required": ["name", "model", "watch"],
    "properties": {
        "name": {"type": "string", "pattern": MODEL_NAME_PATTERN},
        "model": {"type": "string", "pattern": MODEL_NAME_PATTERN},
        "version": {"type": ["integer", "null"], "minimum": 1},
        "watch": {"type": "string", "minLength": 1, "maxLength": 4096},
        "pattern": {"type": "string", "minLength": 1, "maxLength": 255, "default": "*"},
        "output": {"type": ["string", "null"], "minLength": 1, "maxLength": 4096},
    },
}
_PAGE = {
    "type": "object",
    "properties": {
        "jobs": {"type": "array", "items": ref("Job")},
        "next_cursor": {"type": ["integer", "null"]},
    },
}
JOB_SCHEMAS: dict[str, Any] = {
    "Job": _JOB,
    "JobRequest": _JOB_REQUEST,
    "Trigger": _TRIGGER,
    "JobPage": _PAGE,
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_PAGING = (
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Page size (50)."),
    _query("cursor", {"type": "integer", "minimum": 0}, "next_cursor of the previous page."),
)


def job_paths() -> dict[str, Any]:
    submit_body = {
        "required": True,
        "content": {
            "application/json": {"schema": ref("JobRequest")},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    accepted = json_ok(
        ref("Job"), "Accepted (committed); a repeated Idempotency-Key gives the same job"
    )
    submit_errors = (400, 404, 413, 415, 422)
    job = json_ok(ref("Job"), "The job")
    page = json_ok(ref("JobPage"), "Newest first")
    model = _query("model", {"type": "string"}, "Only this model's jobs.")
    status = _query(
        "status", {"type": "string", "enum": list(STATUSES)}, "Only jobs in this state."
    )
    deleted = json_ok({"type": "object", "properties": {"deleted": {"type": "string"}}}, "Deleted")
    triggers = json_ok(
        {"type": "object", "properties": {"triggers": {"type": "array", "items": ref("Trigger")}}},
        "Triggers",
    )
    return {
        "/api/models/{name}/jobs": {"post": op("Submit an asynchronous job (version by traffic)", _TAG, accepted, body=submit_body, errors=submit_errors, params=("name", "idempotency"), ok_code="202")},
        "/api/models/{name}/versions/{version}/jobs": {"post": op("Submit an asynchronous job to one version", _TAG, accepted, body=submit_body, errors=submit_errors, params=("name", "version", "idempotency"), ok_code="202")},
        "/api/jobs": {"get": op("List jobs", _TAG, page, errors=(400,), params=(model, status, *_PAGING))},
        "/api/jobs/{id}": {
            "get": op("A job: status, attempts, errors, result", _TAG, job, errors=(404,), params=(_path("id"),)),
            "delete": op("Cancel a queued job", _TAG, job, errors=(404, 409), params=(_path("id"),)),
        },
        "/api/dead-letters": {"get": op("Jobs that failed every attempt", _TAG, page, errors=(400,), params=(model, *_PAGING))},
        "/api/dead-letters/{id}/requeue": {"post": op("Queue a dead job again", _TAG, job, errors=(404,), params=(_path("id"),))},
        "/api/dead-letters/{id}": {"delete": op("Delete a dead job", _TAG, deleted, errors=(404,), params=(_path("id"),))},
        "/api/triggers": {
            "get": op("List triggers", _TAG, triggers),
            "post": op("Add a trigger: new files become jobs", _TAG, json_ok(ref("Trigger"), "Added"), body={"required": True, "content": {"application/json": {"schema": ref("Trigger")}}}, errors=(400, 404, 409, 422), ok_code="201"),
        },
        "/api/triggers/{name}": {"delete": op("Remove a trigger", _TAG, deleted, errors=(404,), params=(_path("name"),))},
    }  # fmt: skip
