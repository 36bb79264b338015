"""Small helpers for handlers: JSON bodies with Content-Length, and the platform an app
serves."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from zeroserve.gateway.idempotency import Idempotency
from zeroserve.platform import Platform

__all__ = ["idempotency_of", "json_response", "platform_of"]


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps(doc)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def idempotency_of(request: Request) -> Idempotency:
    store: Idempotency = request.app.state.idempotency
    return store
