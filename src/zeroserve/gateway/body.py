"""Reading request bodies: a size limit enforced before and while reading, and a check that
the content type can carry an inference request at all."""

from __future__ import annotations

from starlette.requests import Request

from zeroserve.gateway.errors import ApiError

__all__ = ["check_content_type", "read_body"]

# Clients send all of these for inference: tritonclient's sync client sends none, its aio
# client sends application/octet-stream even for JSON, curl -d sends form-urlencoded.
_TENSOR_TYPES = frozenset(
    {
        "",
        "application/json",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "text/plain",
    }
)


def check_content_type(request: Request) -> None:
    raw = request.headers.get("content-type", "")
    media = raw.split(";", 1)[0].strip().lower()
    if media in _TENSOR_TYPES or media.endswith("+json"):
        return
    raise ApiError(
        415,
        f"content type {media!r} cannot carry an inference request; send application/json,"
        " or application/octet-stream with the binary tensor extension",
    )


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, f"Content-Length {declared!r} is not a number") from None
        if size > limit:
            raise ApiError(413, f"request body is {size} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
