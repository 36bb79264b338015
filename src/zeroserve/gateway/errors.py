"""HTTP errors: every failure becomes `{"error": "..."}` with the right status.

Exceptions from the core are translated to statuses here and nowhere else.
"""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from zeroserve.artifacts import ArtifactError
from zeroserve.instances import ModelError
from zeroserve.jobs.queue import IdempotencyConflict, JobInputError, JobStateError
from zeroserve.platform import DeployError, NotFound
from zeroserve.registry import RegistryError
from zeroserve.scaling import (
    DeadlineExceeded,
    DeadlineUnmeetable,
    InstanceCpuLimit,
    InstanceCrashed,
    InstanceOutOfMemory,
    InvocationTimeout,
    PoolClosed,
    QueueFull,
    QueueTimeout,
    StartFailed,
)
from zeroserve.tensors import TensorError

__all__ = ["ApiError", "error_response", "exception_handlers", "to_api_error"]

log = logging.getLogger("zeroserve.gateway")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": message}).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


_RETRY = {"Retry-After": "1"}

# Core exception -> (status, headers). 503 and 429 say when to come back.
_STATUS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], int, dict[str, str]], ...] = (
    (NotFound, 404, {}),
    (TensorError, 400, {}),
    ((DeployError, RegistryError, IdempotencyConflict, JobInputError), 422, {}),
    (JobStateError, 409, {}),
    (QueueFull, 429, _RETRY),
    ((DeadlineExceeded, InvocationTimeout), 504, {}),
    ((DeadlineUnmeetable, QueueTimeout, StartFailed, InstanceCrashed, PoolClosed), 503, _RETRY),
    # The instance went over its memory or CPU-time limit and was replaced.
    ((InstanceOutOfMemory, InstanceCpuLimit), 503, _RETRY),
)


def to_api_error(exc: Exception) -> ApiError:
    """The status a core exception stands for."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ArtifactError):
        status = 413 if "larger than the limit" in str(exc) else 422
        return ApiError(status, str(exc))
    if isinstance(exc, ModelError):
        return ApiError(422, f"the model could not process this input: {exc}")
    for kinds, status, headers in _STATUS:
        if isinstance(exc, kinds):
            return ApiError(status, str(exc), dict(headers))
    raise exc


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {
        404: f"no route {request.url.path}",
        405: f"method {request.method} is not allowed on {request.url.path}",
    }
    message = messages.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # A bug: say so in JSON, log the traceback; never an HTML page.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}")


exception_handlers = {
    ApiError: _api_error,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
