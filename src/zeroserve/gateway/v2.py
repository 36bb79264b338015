"""Open Inference Protocol V2 (KServe V2 / Triton REST) routes."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from zeroserve import __version__
from zeroserve.gateway import codec_v2
from zeroserve.gateway.auth import actor_of, model_for, principal_of, visible
from zeroserve.gateway.body import check_content_type, read_body
from zeroserve.gateway.errors import ApiError, to_api_error
from zeroserve.gateway.idempotency import idempotency_key, request_digest
from zeroserve.gateway.invoke import (
    DEADLINE_HEADER,
    Metered,
    parse_deadline,
    parse_version,
    result_headers,
)
from zeroserve.gateway.responses import idempotency_of, json_response, platform_of
from zeroserve.platform import Platform
from zeroserve.spec import VersionSpec

__all__ = ["routes"]

# V2 "platform" names, as Triton reports them.
_PLATFORMS = {
    "onnx": "onnxruntime_onnx",
    "sklearn": "sklearn",
    "python": "python",
    "torch": "pytorch_libtorch",
}


async def live(request: Request) -> Response:
    return json_response({"live": True})


async def ready(request: Request) -> Response:
    return json_response({"ready": True})


async def server_metadata(request: Request) -> Response:
    return json_response(
        {
            "name": "zeroserve",
            "version": __version__,
            "extensions": ["binary_tensor_data", "model_repository"],
        }
    )


def _metadata(spec: VersionSpec, versions: list[str]) -> dict[str, Any]:
    def tensors(items: Any) -> list[dict[str, Any]]:
        return [
            {"name": t.name, "datatype": t.datatype or "BYTES", "shape": t.shape or [-1]}
            for t in items
        ]

    return {
        "name": spec.model,
        "versions": versions,
        "platform": _PLATFORMS[spec.runtime],
        "inputs": tensors(spec.signature.inputs),
        "outputs": tensors(spec.signature.outputs),
    }


def _lookup(request: Request) -> tuple[Platform, VersionSpec, list[str]]:
    platform = platform_of(request)
    name = request.path_params["name"]
    try:
        version = parse_version(request.path_params.get("version"))
        record = model_for(request, platform, name, "models.read")
        spec = platform.version(name, version)
    except Exception as exc:
        raise to_api_error(exc) from None
    return platform, spec, [str(v.version) for v in record.versions]


async def model_metadata(request: Request) -> Response:
    _, spec, versions = _lookup(request)
    return json_response(_metadata(spec, versions))


async def model_ready(request: Request) -> Response:
    # A deployed model is ready even at zero instances: the first request starts one.
    _, spec, _ = _lookup(request)
    return json_response({"name": spec.model, "ready": True})


async def infer(request: Request) -> Response:
    platform = platform_of(request)
    meter = Metered(platform, "v2")
    try:
        check_content_type(request)
        version = parse_version(request.path_params.get("version"))
        model_for(request, platform, request.path_params["name"], "models.invoke")
        meter.actor = actor_of(request)
        spec = meter.route(request.path_params["name"], version)
        body = await read_body(request, platform.settings.max_body_bytes)
        meter.input_data = body
        key = idempotency_key(request)
        if key is None:
            return await _infer(request, meter, spec, body, None)
        return await idempotency_of(request).run(
            meter.actor.tenant,  # keys are per tenant: one tenant's key never meets another's
            key,
            request_digest(request, body),
            lambda: _infer(request, meter, spec, body, key),
        )
    except Exception as exc:
        raise meter.fail(exc) from None
    finally:
        meter.done()


async def _infer(
    request: Request, meter: Metered, spec: VersionSpec, body: bytes, key: str | None
) -> Response:
    req = codec_v2.decode_request(body, request.headers.get(codec_v2.HEADER_LENGTH))
    codec_v2.validate(req.inputs, spec.signature)
    codec_v2.check_requested_outputs(req.outputs, spec.signature)
    result = await meter.infer(
        spec, req.inputs, parse_deadline(request.headers.get(DEADLINE_HEADER)), key
    )
    payload, header_length = codec_v2.encode_response(spec.model, spec.version, req, result.outputs)
    meter.output_data = payload
    headers = result_headers(result)
    if header_length is None:
        return Response(payload, headers=headers, media_type="application/json")
    headers["inference-header-content-length"] = str(header_length)
    return Response(payload, headers=headers, media_type="application/octet-stream")


async def repository_index(request: Request) -> Response:
    """Every deployed version is READY: it starts on demand. The body ({"ready": bool})
    may be empty, as tritonclient sends it."""
    platform = platform_of(request)
    body = await read_body(request, 64 * 1024)
    if body.strip():
        try:
            json.loads(body)
        except ValueError as exc:
            raise ApiError(400, f"malformed JSON: {exc}") from None
    principal = principal_of(request)
    index = [
        {"name": r.name, "version": str(v.version), "state": "READY", "reason": ""}
        for r in platform.models()
        if visible(principal, r)
        for v in r.versions
    ]
    return json_response(index)


routes = [
    Route("/v2/health/live", live, methods=["GET"]),
    Route("/v2/health/ready", ready, methods=["GET"]),
    Route("/v2", server_metadata, methods=["GET"]),
    Route("/v2/repository/index", repository_index, methods=["POST"]),
    Route("/v2/models/{name}", model_metadata, methods=["GET"]),
    Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
    Route("/v2/models/{name}/infer", infer, methods=["POST"]),
    Route("/v2/models/{name}/versions/{version}", model_metadata, methods=["GET"]),
    Route("/v2/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
    Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
]
