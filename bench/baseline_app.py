"""The bare baseline for bench/first.py: one Starlette route on uvicorn that does, in its
handler, only what a hand-written model server would do for a KServe V2 JSON request —
parse the JSON, build the input array, run onnxruntime, encode the V2 JSON response.

No queue, no instance process, no metering: the difference between zeroserve and this app is
the platform's overhead. Run as

    ZEROSERVE_BASELINE_MODEL=examples/iris/iris.onnx \
        uvicorn --app-dir bench baseline_app:app --port 8000 --no-access-log
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MODEL_PATH = os.environ.get("ZEROSERVE_BASELINE_MODEL", "examples/iris/iris.onnx")
MODEL_NAME = os.environ.get("ZEROSERVE_BASELINE_NAME", "iris")

# The same session settings as zeroserve's onnx runtime: one core per instance.
_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_options.inter_op_num_threads = 1
_options.log_severity_level = 3
session = ort.InferenceSession(
    MODEL_PATH, sess_options=_options, providers=["CPUExecutionProvider"]
)
_OUTPUT_NAMES = [o.name for o in session.get_outputs()]
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


def _decode(body: bytes) -> dict[str, np.ndarray]:
    doc = json.loads(body)
    feed: dict[str, np.ndarray] = {}
    for item in doc["inputs"]:
        dtype = _NUMPY_TYPES[item["datatype"]]
        feed[item["name"]] = np.asarray(item["data"], dtype=dtype).reshape(item["shape"])
    return feed


def _encode(results: list[Any]) -> bytes:
    outputs = []
    for name, value in zip(_OUTPUT_NAMES, results, strict=True):
        array = np.asarray(value)
        outputs.append(
            {
                "name": name,
                "datatype": _DATATYPES.get(array.dtype, "BYTES"),
                "shape": list(array.shape),
                "data": array.reshape(-1).tolist(),
            }
        )
    doc = {"model_name": MODEL_NAME, "model_version": "1", "outputs": outputs}
    return json.dumps(doc, separators=(",", ":")).encode()


async def infer(request: Request) -> Response:
    try:
        feed = _decode(await request.body())
    except (ValueError, KeyError, TypeError) as exc:
        return _error(400, f"bad request: {exc}")
    results = session.run(_OUTPUT_NAMES, feed)
    return Response(_encode(results), media_type="application/json")


async def ready(request: Request) -> Response:
    return Response(b'{"ready":true}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
    ]
)
