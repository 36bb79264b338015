"""Small response helpers: JSON bodies with Content-Length, no extra work on the hot path."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

__all__ = ["json_response"]


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(doc, separators=(",", ":")).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")
