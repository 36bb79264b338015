"""Versions are immutable; traffic points at them and can be moved back (a rollback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

BODY = {
    "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
}


def test_rollback_and_split(server: Any, iris_models: dict[str, Path]) -> None:
    server.deploy("iris", iris_models["onnx"])
    server.deploy("iris", iris_models["onnx"], "--max-instances", "2")
    with server.client() as c:
        assert c.post("/v2/models/iris/infer", json=BODY).json()["model_version"] == "2"
        r = c.put("/api/models/iris/traffic", json={"traffic": [{"version": 1, "percent": 100}]})
        assert r.status_code == 200, r.text
        assert r.json()["traffic"] == [{"version": 1, "percent": 100}]
        assert c.post("/v2/models/iris/infer", json=BODY).json()["model_version"] == "1"
        assert c.get("/v2/models/iris").json()["versions"] == ["1", "2"]

        split = {"traffic": [{"version": 1, "percent": 50}, {"version": 2, "percent": 50}]}
        assert c.put("/api/models/iris/traffic", json=split).status_code == 200
        seen = {
            c.post("/v2/models/iris/infer", json=BODY).json()["model_version"] for _ in range(40)
        }
        assert seen == {"1", "2"}  # a 50/50 split missing one version 40 times: p = 2e-12

        r = c.put("/api/models/iris/traffic", json={"traffic": [{"version": 3, "percent": 100}]})
        assert r.status_code == 422
        assert "no version(s) [3]" in r.json()["error"]
        r = c.put("/api/models/iris/traffic", json={"traffic": [{"version": 1, "percent": 60}]})
        assert r.status_code == 422
        assert "add up to 100" in r.json()["error"]
        # Versions themselves never change: v2 keeps the spec it was deployed with.
        assert c.get("/api/models/iris/versions/2").json()["scaling"]["max_instances"] == 2
        assert c.get("/api/models/iris/versions/1").json()["scaling"]["max_instances"] == 4
