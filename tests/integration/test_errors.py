"""Bad input gets the right status and a JSON error that names the problem; never a 500."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

MODELS = Path(__file__).parent / "models"
GOOD = {
    "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
}


def _error(r: httpx.Response, status: int, *fragments: str) -> str:
    assert r.status_code == status, f"{r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["content-length"] == str(len(r.content))
    message: str = r.json()["error"]
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.fixture
def iris(server_factory: Any, iris_models: dict[str, Path]) -> Any:
    server = server_factory(ZEROSERVE_MAX_BODY_BYTES=str(64 * 1024))
    server.deploy("iris", iris_models["onnx"])
    return server


def _tensor(**overrides: Any) -> dict[str, Any]:
    tensor = {"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}
    tensor.update(overrides)
    return {"inputs": [tensor]}


def test_unknown_model_and_version_are_404(iris: Any) -> None:
    with iris.client() as c:
        _error(c.post("/v2/models/nope/infer", json=GOOD), 404, "nope", "not found")
        _error(c.post("/v2/models/iris/versions/7/infer", json=GOOD), 404, "no version 7")
        _error(c.post("/v2/models/iris/versions/x/infer", json=GOOD), 404, "'x'")
        _error(c.get("/v2/models/nope"), 404, "nope")
        _error(c.get("/v2/models/nope/ready"), 404)
        _error(c.post("/v1/models/nope:predict", json={"instances": [[1, 2, 3, 4]]}), 404)
        _error(c.get("/api/models/nope"), 404)
        _error(c.delete("/api/models/nope"), 404)
        _error(c.get("/no/such/route"), 404, "/no/such/route")


def test_malformed_and_mismatched_tensors_are_400(iris: Any) -> None:
    with iris.client() as c:
        post = lambda body: c.post("/v2/models/iris/infer", content=body)  # noqa: E731
        _error(post(b"{not json"), 400, "malformed JSON")
        _error(post(b"[1, 2]"), 400, "JSON object")
        _error(post(json.dumps({"inputs": []}).encode()), 400, "non-empty list")
        _error(c.post("/v2/models/iris/infer", json=_tensor(datatype="FP64")), 400,
               "expected datatype FP32, got FP64")  # fmt: skip
        _error(c.post("/v2/models/iris/infer", json=_tensor(shape=[1, 3], data=[1, 2, 3])), 400,
               "expected shape [-1, 4], got [1, 3]")  # fmt: skip
        _error(c.post("/v2/models/iris/infer", json=_tensor(name="Y")), 400,
               "missing input 'X'")  # fmt: skip
        _error(c.post("/v2/models/iris/infer", json=_tensor(shape=[2, 4])), 400,
               "needs 8 values, got 4")  # fmt: skip
        _error(c.post("/v2/models/iris/infer", json=_tensor(datatype="FP99")), 400, "FP99")
        _error(c.post("/v2/models/iris/infer", json=_tensor(data=["a", "b", "c", "d"])), 400,
               "does not fit datatype FP32")  # fmt: skip
        _error(c.post("/v2/models/iris/infer", json=_tensor(shape="1x4")), 400, "shape")
        bad_out = {**GOOD, "outputs": [{"name": "nope"}]}
        _error(c.post("/v2/models/iris/infer", json=bad_out), 400, "unknown output 'nope'")
        _error(c.post("/v1/models/iris:predict", json={"rows": []}), 400, "'instances' or 'inputs'")
        _error(c.post("/v1/models/iris:predict", json={"instances": [[1, 2, 3]]}), 400,
               "expected shape [-1, 4], got [1, 3]")  # fmt: skip


def test_truncated_binary_tensor_is_400(iris: Any) -> None:
    header = json.dumps(
        {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4],
                     "parameters": {"binary_data_size": 16}}]}
    ).encode()  # fmt: skip
    body = header + struct.pack("<3f", 1, 2, 3)  # 12 of the 16 bytes
    with iris.client() as c:
        headers = {"Inference-Header-Content-Length": str(len(header))}
        _error(c.post("/v2/models/iris/infer", content=body, headers=headers), 400, "runs past")
        headers = {"Inference-Header-Content-Length": "99999"}
        _error(c.post("/v2/models/iris/infer", content=body, headers=headers), 400,
               "Inference-Header-Content-Length")  # fmt: skip


def test_oversized_body_is_413(iris: Any) -> None:
    big = _tensor(shape=[5000, 4], data=[1.0] * 20000)
    with iris.client() as c:
        _error(c.post("/v2/models/iris/infer", json=big), 413, "limit")


def test_wrong_method_is_405_and_wrong_content_type_is_415(iris: Any) -> None:
    with iris.client() as c:
        _error(c.get("/v2/models/iris/infer"), 405, "GET")
        _error(c.put("/v2/health/live"), 405)
        r = c.post(
            "/v2/models/iris/infer", content=b"<html></html>", headers={"content-type": "text/html"}
        )
        _error(r, 415, "text/html")
        # Clients that send no content type, or octet-stream for JSON, are served.
        r = c.post("/v2/models/iris/infer", content=json.dumps(GOOD).encode())
        assert r.status_code == 200
        r = c.post(
            "/v2/models/iris/infer",
            content=json.dumps(GOOD).encode(),
            headers={"content-type": "application/octet-stream"},
        )
        assert r.status_code == 200


def test_refused_deployments_are_422(server: Any, iris_models: dict[str, Path]) -> None:
    result = server.cli("deploy", "iris-sk", str(iris_models["joblib"]), check=False)
    assert result.returncode == 1
    assert "--trust" in result.stderr
    result = server.cli("deploy", "broken", str(MODELS / "broken.py"), check=False)
    assert result.returncode == 1
    assert "weights file is corrupt" in result.stderr
    with server.client() as c:
        r = c.post("/api/models/Bad Name/versions", json={"artifact": {"uri": "/nope"}})
        _error(r, 422, "invalid")
        r = c.post("/api/models/x/versions", json={"artifact": {"uri": "/does/not/exist.onnx"}})
        _error(r, 422, "not found")
        r = c.post(
            "/api/models/x/versions",
            json={"artifact": {"uri": str(iris_models["onnx"])},
                  "scaling": {"min_instances": 3, "max_instances": 1}},
        )  # fmt: skip
        _error(r, 422, "max_instances = 1 must be >= min_instances = 3")
        _error(c.post("/api/models/x/versions", content=b"{"), 400, "malformed JSON")
        assert c.get("/api/models").json()["models"] == []
