"""The native JSON API: artifacts, deploy, list, status, traffic, delete, metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from zeroserve.gateway.auth import actor_of, model_for, principal_of, require, visible
from zeroserve.gateway.body import read_body
from zeroserve.gateway.errors import ApiError, to_api_error
from zeroserve.gateway.invoke import parse_version
from zeroserve.gateway.responses import json_response, platform_of
from zeroserve.metering.audit_trail import Actor
from zeroserve.platform import NameTaken, version_view
from zeroserve.spec import DeployRequest, PrewarmRequest, TrafficSplit

__all__ = ["json_model", "routes", "validation_message"]


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


async def json_model(request: Request, model: type[BaseModel], allow_empty: bool = False) -> Any:
    body = await read_body(request, 1024 * 1024)
    try:
        doc = json.loads(body) if body.strip() else ({} if allow_empty else None)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ApiError(422, validation_message(exc)) from None


async def upload_artifact(request: Request) -> Response:
    principal = require(request, "models.deploy")
    platform = platform_of(request)
    limit = platform.settings.max_artifact_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"artifact is {declared} bytes; the limit is {limit} bytes")

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            yield chunk

    try:
        digest, size = await platform.upload(chunks(), principal.actor)
    except Exception as exc:
        raise to_api_error(exc) from None
    return json_response({"sha256": digest, "size": size}, status=201)


async def deploy(request: Request) -> Response:
    name = request.path_params["name"]
    platform = platform_of(request)
    principal = require(request, "models.deploy")
    actor = principal.actor
    existing = next((r for r in platform.models() if r.name == name), None)
    if existing is not None and principal.sees_tenant(existing.tenant):
        model_for(request, platform, name, "models.deploy")
        actor = Actor(existing.tenant, actor.name)  # an admin adds to the owner's model
    elif not principal.may("models.deploy", model=name, tenant=principal.tenant):
        raise ApiError(403, f"this key may not deploy {name!r}")
    deploy_request = await json_model(request, DeployRequest)
    try:
        spec = await platform.deploy(name, deploy_request, actor)
    except NameTaken as exc:
        raise ApiError(409, str(exc)) from None
    except Exception as exc:
        raise to_api_error(exc) from None
    return json_response({"model": name, **version_view(spec)}, status=201)


async def list_models(request: Request) -> Response:
    platform = platform_of(request)
    principal = principal_of(request)
    shown = [platform.status(r.name) for r in platform.models() if visible(principal, r)]
    return json_response({"models": shown})


async def model_status(request: Request) -> Response:
    platform = platform_of(request)
    model_for(request, platform, request.path_params["name"], "models.read")
    try:
        return json_response(platform.status(request.path_params["name"]))
    except Exception as exc:
        raise to_api_error(exc) from None


async def version_status(request: Request) -> Response:
    model_for(request, platform_of(request), request.path_params["name"], "models.read")
    try:
        version = parse_version(request.path_params["version"])
        spec = platform_of(request).version(request.path_params["name"], version)
    except Exception as exc:
        raise to_api_error(exc) from None
    return json_response({"model": spec.model, **version_view(spec)})


class _TrafficBody(BaseModel):
    traffic: list[TrafficSplit]


async def set_traffic(request: Request) -> Response:
    name = request.path_params["name"]
    model_for(request, platform_of(request), name, "models.traffic")
    body = await json_model(request, _TrafficBody)
    try:
        platform_of(request).set_traffic(name, body.traffic, actor_of(request))
        return json_response(platform_of(request).status(name))
    except Exception as exc:
        raise to_api_error(exc) from None


async def prewarm(request: Request) -> Response:
    model_for(request, platform_of(request), request.path_params["name"], "models.traffic")
    body = await json_model(request, PrewarmRequest, allow_empty=True)
    try:
        result = await platform_of(request).prewarm(
            request.path_params["name"], body.instances, body.duration_s
        )
    except Exception as exc:
        raise to_api_error(exc) from None
    return json_response(result)


async def delete_model(request: Request) -> Response:
    name = request.path_params["name"]
    model_for(request, platform_of(request), name, "models.deploy")
    try:
        await platform_of(request).remove(name, actor_of(request))
    except Exception as exc:
        raise to_api_error(exc) from None
    return json_response({"deleted": name})


async def metrics(request: Request) -> Response:
    principal = require(request, "metrics.read")
    platform = platform_of(request)
    platform.metrics.set_snapshot_memory(platform.snapshot_memory())
    text = platform.metrics.render()
    if not principal.admin:  # a tenant sees its own models' series, nothing platform-wide
        mine = {r.name for r in platform.models() if visible(principal, r)}
        text = only_models(text, mine)
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


def only_models(text: bytes, models: set[str]) -> bytes:
    """The exposition lines labelled with one of `models` (and their HELP/TYPE lines)."""
    keep = []
    for line in text.splitlines():
        if line.startswith(b"#"):
            keep.append(line)
            continue
        start = line.find(b'model="')
        if start >= 0:
            end = line.find(b'"', start + 7)
            if line[start + 7 : end].decode() in models:
                keep.append(line)
    return b"\n".join(keep) + b"\n"


routes = [
    Route("/api/artifacts", upload_artifact, methods=["PUT"]),
    Route("/api/models", list_models, methods=["GET"]),
    Route("/api/models/{name}", model_status, methods=["GET"]),
    Route("/api/models/{name}", delete_model, methods=["DELETE"]),
    Route("/api/models/{name}/versions", deploy, methods=["POST"]),
    Route("/api/models/{name}/versions/{version}", version_status, methods=["GET"]),
    Route("/api/models/{name}/traffic", set_traffic, methods=["PUT"]),
    Route("/api/models/{name}/prewarm", prewarm, methods=["POST"]),
    Route("/metrics", metrics, methods=["GET"]),
]
