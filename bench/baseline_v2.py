"""What both bare baseline apps share: one Starlette route that parses a KServe V2 JSON
request into numpy arrays, calls `predict` in its handler, and encodes the V2 JSON response,
plus a readiness route. Nothing else: no queue, no instance process, no metering."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Tensors = dict[str, np.ndarray]

_DATATYPES = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.int64): "INT64",
    np.dtype(np.int32): "INT32",
}
_NUMPY_TYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def _error(status: int, message: str) -> Response:
    body = json.dumps({"error": message}).encode()
    return Response(body, status_code=status, media_type="application/json")


def decode(body: bytes) -> Tensors:
    doc = json.loads(body)
    feed: Tensors = {}
    for item in doc["inputs"]:
        if item["datatype"] == "BYTES":
            data = [x.encode() if isinstance(x, str) else bytes(x) for x in item["data"]]
            array = np.empty(len(data), dtype=object)
            array[:] = data
        else:
            array = np.asarray(item["data"], dtype=_NUMPY_TYPES[item["datatype"]])
        feed[item["name"]] = array.reshape(item["shape"])
    return feed


def encode(model_name: str, results: Tensors) -> bytes:
    outputs = []
    for name, value in results.items():
        array = np.asarray(value)
        outputs.append(
            {
                "name": name,
                "datatype": _DATATYPES.get(array.dtype, "BYTES"),
                "shape": list(array.shape),
                "data": array.reshape(-1).tolist(),
            }
        )
    doc = {"model_name": model_name, "model_version": "1", "outputs": outputs}
    return json.dumps(doc, separators=(",", ":")).encode()


def make_app(model_name: str, predict: Callable[[Tensors], Tensors]) -> Starlette:
    async def infer(request: Request) -> Response:
        try:
            feed = decode(await request.body())
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"bad request: {exc}")
        return Response(encode(model_name, predict(feed)), media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b'{"ready":true}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/v2/models/{name}/infer", infer, methods=["POST"]),
            Route("/v2/health/ready", ready, methods=["GET"]),
        ]
    )
