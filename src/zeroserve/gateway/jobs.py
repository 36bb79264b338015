"""Asynchronous inference: jobs, dead letters and triggers over HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fsspec
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from zeroserve.gateway import codec_v2
from zeroserve.gateway.auth import Principal, model_for, principal_of, require
from zeroserve.gateway.body import check_content_type, read_body
from zeroserve.gateway.errors import ApiError, to_api_error
from zeroserve.gateway.idempotency import idempotency_key
from zeroserve.gateway.invoke import parse_version
from zeroserve.gateway.native import json_model
from zeroserve.gateway.responses import json_response, platform_of
from zeroserve.jobs import Job, Trigger
from zeroserve.jobs.queue import STATUSES
from zeroserve.jobs.service import JobService, Submission
from zeroserve.jobs.views import job_view, trigger_view
from zeroserve.spec import MODEL_NAME_PATTERN

__all__ = ["routes"]

_MAX_PAGE = 500


def jobs_of(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


def _header_length(request: Request) -> int | None:
    raw = request.headers.get(codec_v2.HEADER_LENGTH)
    if raw is None:
        return None
    if not raw.isdigit():
        raise ApiError(400, f"{codec_v2.HEADER_LENGTH} {raw!r} must be a non-negative integer")
    return int(raw)


async def submit(request: Request) -> Response:
    platform = platform_of(request)
    check_content_type(request)
    principal = principal_of(request)
    try:
        version = parse_version(request.path_params.get("version"))
        record = model_for(request, platform, request.path_params["name"], "models.invoke")
        spec = platform.route(request.path_params["name"], version)
        body = await read_body(request, platform.settings.max_body_bytes)
        sub = Submission(
            body=body,
            header_length=_header_length(request),
            requested_version=version,
            idempotency_key=idempotency_key(request),
            tenant=record.tenant,
            submitted_by=principal.record.prefix if principal.record else None,
        )
        job, created = await jobs_of(request).submit(spec, sub)
    except Exception as exc:
        raise to_api_error(exc) from None
    headers = {"Location": f"/api/jobs/{job.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return json_response(job_view(job, result=False), status=202, headers=headers)


def _may_see(principal: Principal, job: Job) -> bool:
    if not principal.sees_tenant(job.tenant):
        return False
    if principal.may("jobs.read_all", tenant=job.tenant):
        return True
    own = principal.record is not None and job.submitted_by == principal.record.prefix
    return own and principal.may("jobs.read_own", tenant=job.tenant)


async def _visible_job(request: Request) -> Job:
    job = await jobs_of(request).get(request.path_params["id"])
    if job is None or not _may_see(principal_of(request), job):
        raise ApiError(404, f"job {request.path_params['id']!r} not found (or its result expired)")
    return job


async def get_job(request: Request) -> Response:
    return json_response(job_view(await _visible_job(request)))


async def cancel_job(request: Request) -> Response:
    await _visible_job(request)
    try:
        job = await jobs_of(request).cancel(request.path_params["id"])
    except Exception as exc:
        raise to_api_error(exc) from None
    if job is None:
        raise ApiError(404, f"job {request.path_params['id']!r} not found")
    return json_response(job_view(job, result=False))


def _page_args(request: Request) -> dict[str, Any]:
    q = request.query_params
    limit_raw, before_raw = q.get("limit", "50"), q.get("cursor")
    if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= _MAX_PAGE:
        raise ApiError(400, f"limit {limit_raw!r} must be an integer in [1, {_MAX_PAGE}]")
    if before_raw is not None and not before_raw.isdigit():
        raise ApiError(400, f"cursor {before_raw!r} is not one this API returned")
    return {"limit": int(limit_raw), "before": int(before_raw) if before_raw else None}


def _scope(principal: Principal) -> dict[str, Any]:
    """Which jobs a listing may show: all (admin), the tenant's, or the key's own."""
    if principal.admin:
        return {}
    if principal.may("jobs.read_all"):
        return {"tenant": principal.tenant}
    if principal.may("jobs.read_own") and principal.record is not None:
        return {"tenant": principal.tenant, "submitted_by": principal.record.prefix}
    raise ApiError(403, "this key may not read jobs")


async def _page(request: Request, status: str | None) -> Response:
    args = {**_page_args(request), **_scope(principal_of(request))}
    jobs, cursor = await jobs_of(request).list_jobs(
        model=request.query_params.get("model"), status=status, **args
    )
    return json_response({"jobs": [job_view(j, result=False) for j in jobs], "next_cursor": cursor})


async def list_jobs(request: Request) -> Response:
    status = request.query_params.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, f"status {status!r} must be one of {', '.join(STATUSES)}")
    return await _page(request, status)


async def list_dead(request: Request) -> Response:
    require(request, "jobs.read_all")
    return await _page(request, "dead")


async def _dead_letter(request: Request) -> None:
    require(request, "jobs.read_all")
    job = await jobs_of(request).get(request.path_params["id"])
    if job is None or job.status != "dead" or not _may_see(principal_of(request), job):
        raise ApiError(404, f"no dead letter {request.path_params['id']!r}")


async def requeue_dead(request: Request) -> Response:
    await _dead_letter(request)
    job = await jobs_of(request).requeue(request.path_params["id"])
    if job is None:
        raise ApiError(404, f"no dead letter {request.path_params['id']!r}")
    return json_response(job_view(job, result=False))


async def delete_dead(request: Request) -> Response:
    await _dead_letter(request)
    if not await jobs_of(request).delete_dead(request.path_params["id"]):
        raise ApiError(404, f"no dead letter {request.path_params['id']!r}")
    return json_response({"deleted": request.path_params["id"]})


class TriggerRequest(BaseModel):
    name: str = Field(pattern=MODEL_NAME_PATTERN)
    model: str = Field(pattern=MODEL_NAME_PATTERN)
    version: int | None = Field(None, ge=1)
    watch: str = Field(min_length=1, max_length=4096)
    pattern: str = Field("*", min_length=1, max_length=255)
    output: str | None = Field(None, min_length=1, max_length=4096)


async def add_trigger(request: Request) -> Response:
    require(request, "models.deploy")
    body = await json_model(request, TriggerRequest)
    if body.output is not None and body.output.rstrip("/") == body.watch.rstrip("/"):
        raise ApiError(422, "output must differ from watch: results would become new jobs")
    platform = platform_of(request)
    record = model_for(request, platform, body.model, "models.invoke")
    for location in (body.watch, body.output):
        if location is not None and not await asyncio.to_thread(_listable, location):
            raise ApiError(422, f"{location!r} is not a folder the platform can list")
    try:
        platform.version(body.model, body.version)
        trigger = Trigger(
            name=body.name,
            tenant=record.tenant,
            model=body.model,
            version=body.version,
            watch=body.watch,
            pattern=body.pattern,
            output=body.output,
            created_at=time.time(),
        )
        await jobs_of(request).add_trigger(trigger)
    except Exception as exc:
        raise to_api_error(exc) from None
    return json_response(trigger_view(trigger), status=201)


async def _triggers(request: Request) -> list[Trigger]:
    principal = require(request, "models.deploy")
    return await jobs_of(request).triggers(None if principal.admin else principal.tenant)


def _listable(location: str) -> bool:
    """A folder the platform can read now (a typo is refused, not logged every second)."""
    try:
        fs, path = fsspec.core.url_to_fs(location)
        return bool(fs.isdir(path))
    except Exception:  # any filesystem's error means: not usable
        return False


async def list_triggers(request: Request) -> Response:
    return json_response({"triggers": [trigger_view(t) for t in await _triggers(request)]})


async def remove_trigger(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in {t.name for t in await _triggers(request)}:
        raise ApiError(404, f"trigger {name!r} not found")
    if not await jobs_of(request).remove_trigger(name):
        raise ApiError(404, f"trigger {name!r} not found")
    return json_response({"deleted": name})


routes = [
    Route("/api/models/{name}/jobs", submit, methods=["POST"]),
    Route("/api/models/{name}/versions/{version}/jobs", submit, methods=["POST"]),
    Route("/api/jobs", list_jobs, methods=["GET"]),
    Route("/api/jobs/{id}", get_job, methods=["GET"]),
    Route("/api/jobs/{id}", cancel_job, methods=["DELETE"]),
    Route("/api/dead-letters", list_dead, methods=["GET"]),
    Route("/api/dead-letters/{id}/requeue", requeue_dead, methods=["POST"]),
    Route("/api/dead-letters/{id}", delete_dead, methods=["DELETE"]),
    Route("/api/triggers", add_trigger, methods=["POST"]),
    Route("/api/triggers", list_triggers, methods=["GET"]),
    Route("/api/triggers/{name}", remove_trigger, methods=["DELETE"]),
]
