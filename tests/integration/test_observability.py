"""/metrics reports requests, latency, cold starts, instances and queue depth; /openapi.json
describes every route the gateway serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from zeroserve.gateway.app import create_app
from zeroserve.settings import Settings

pytestmark = pytest.mark.integration

GOOD = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0]}]}


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{labels} in /metrics")


def test_metrics_follow_requests_and_instances(server: Any, iris_models: dict[str, Path]) -> None:
    server.deploy("iris", iris_models["onnx"])
    with server.client() as c:
        for _ in range(3):
            assert c.post("/v2/models/iris/infer", json=GOOD).status_code == 200
        assert c.post("/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4]]}).is_success
        bad = {"inputs": [{**GOOD["inputs"][0], "datatype": "FP64"}]}
        assert c.post("/v2/models/iris/infer", json=bad).status_code == 400
        text = c.get("/metrics").text
    v1 = {"model": "iris", "version": "1"}
    assert _sample(text, "zeroserve_requests_total", **v1, protocol="v2", status="200") == 3
    assert _sample(text, "zeroserve_requests_total", **v1, protocol="v1", status="200") == 1
    assert _sample(text, "zeroserve_requests_total", **v1, protocol="v2", status="400") == 1
    assert _sample(text, "zeroserve_request_duration_seconds_count", **v1) == 5
    assert _sample(text, "zeroserve_cold_starts_total", **v1, path="fork") == 1
    assert _sample(text, "zeroserve_cold_start_seconds_count", **v1, path="fork") == 1
    assert _sample(text, "zeroserve_cold_start_seconds_sum", **v1, path="fork") > 0
    assert _sample(text, "zeroserve_instances", **v1) == 1
    assert _sample(text, "zeroserve_queue_depth", **v1) == 0


def test_openapi_covers_every_route(server: Any) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    app = create_app(Settings())
    served: set[tuple[str, str]] = set()
    for route in app.routes:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                served.add((route.path, method.lower()))
    documented = {(path, m) for path, ops in doc["paths"].items() for m in ops}
    assert served == documented
    assert httpx.get(f"{server.url}/docs").headers["content-type"].startswith("text/html")
