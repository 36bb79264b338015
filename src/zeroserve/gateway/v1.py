"""TF-Serving / KServe V1 protocol routes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from zeroserve.gateway import codec_v1
from zeroserve.gateway.auth import actor_of, model_for, principal_of, visible
from zeroserve.gateway.body import check_content_type, read_body
from zeroserve.gateway.codec_v2 import validate
from zeroserve.gateway.idempotency import idempotency_key, request_digest
from zeroserve.gateway.invoke import DEADLINE_HEADER, Metered, parse_deadline, result_headers
from zeroserve.gateway.responses import idempotency_of, json_response, platform_of
from zeroserve.spec import VersionSpec

__all__ = ["routes"]


async def server_live(request: Request) -> Response:
    # The KServe V1 client's liveness probe reads {"status": "alive"} at the root.
    return json_response({"status": "alive", "name": "zeroserve", "docs": "/docs"})


async def list_models(request: Request) -> Response:
    principal = principal_of(request)
    names = [r.name for r in platform_of(request).models() if visible(principal, r)]
    return json_response({"models": names})


async def model_status(request: Request) -> Response:
    name = request.path_params["name"]
    model_for(request, platform_of(request), name, "models.read")
    return json_response({"name": name, "ready": True})


async def predict(request: Request) -> Response:
    platform = platform_of(request)
    meter = Metered(platform, "v1")
    try:
        check_content_type(request)
        model_for(request, platform, request.path_params["name"], "models.invoke")
        meter.actor = actor_of(request)
        spec = meter.route(request.path_params["name"], None)
        body = await read_body(request, platform.settings.max_body_bytes)
        meter.input_data = body
        key = idempotency_key(request)
        if key is None:
            return await _predict(request, meter, spec, body, None)
        return await idempotency_of(request).run(
            meter.actor.tenant,  # keys are per tenant: one tenant's key never meets another's
            key,
            request_digest(request, body),
            lambda: _predict(request, meter, spec, body, key),
        )
    except Exception as exc:
        raise meter.fail(exc) from None
    finally:
        meter.done()


async def _predict(
    request: Request, meter: Metered, spec: VersionSpec, body: bytes, key: str | None
) -> Response:
    inputs, rows = codec_v1.decode_request(body, spec.signature)
    validate(inputs, spec.signature)
    result = await meter.infer(
        spec, inputs, parse_deadline(request.headers.get(DEADLINE_HEADER)), key
    )
    payload = codec_v1.encode_response(result.outputs, rows)
    meter.output_data = payload
    return Response(payload, headers=result_headers(result), media_type="application/json")


routes = [
    Route("/", server_live, methods=["GET"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{name}:predict", predict, methods=["POST"]),
    Route("/v1/models/{name}", model_status, methods=["GET"]),
]
