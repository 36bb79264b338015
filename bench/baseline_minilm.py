"""The bare MiniLM baseline for bench/load.py: one Starlette route on uvicorn that loads the
model folder's own `model.py` class in-process and, in its handler, does only what a
hand-written model server would do for a KServe V2 JSON request: parse the JSON, build the
`text` BYTES array, call `predict` (one request, one call: no batching), encode the V2 JSON
response (`embedding` FP32 [N, 384]).

No queue, no instance process, no batcher: the difference between zeroserve and this app is
what the platform adds (or gains, with batching and a second instance). Run as

    ZEROSERVE_BASELINE_MODEL=examples/minilm/build/minilm \
        uvicorn --app-dir bench baseline_minilm:app --port 8000 --no-access-log
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MODEL_DIR = os.environ.get("ZEROSERVE_BASELINE_MODEL", "examples/minilm/build/minilm")
MODEL_NAME = os.environ.get("ZEROSERVE_BASELINE_NAME", "minilm")
MODEL_CLASS = os.environ.get("ZEROSERVE_BASELINE_CLASS", "MiniLM")


def _load_model() -> Any:
    spec = importlib.util.spec_from_file_location(
        "_baseline_model", os.path.join(MODEL_DIR, "model.py")
    )
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {MODEL_DIR}/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    instance = getattr(module, MODEL_CLASS)()
    instance.load(MODEL_DIR)
    return instance


model = _load_model()
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
        if item["datatype"] == "BYTES":
            data = [x.encode() if isinstance(x, str) else bytes(x) for x in item["data"]]
            array = np.empty(len(data), dtype=object)
            array[:] = data
        else:
            array = np.asarray(item["data"], dtype=_NUMPY_TYPES[item["datatype"]])
        feed[item["name"]] = array.reshape(item["shape"])
    return feed


def _encode(results: dict[str, np.ndarray]) -> bytes:
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
    doc = {"model_name": MODEL_NAME, "model_version": "1", "outputs": outputs}
    return json.dumps(doc, separators=(",", ":")).encode()


async def infer(request: Request) -> Response:
    try:
        feed = _decode(await request.body())
    except (ValueError, KeyError, TypeError) as exc:
        return _error(400, f"bad request: {exc}")
    return Response(_encode(model.predict(feed)), media_type="application/json")


async def ready(request: Request) -> Response:
    return Response(b'{"ready":true}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
    ]
)
