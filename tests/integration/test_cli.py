"""The CLI a user types: deploy (flags and -f spec.yaml), ls, status --json, invoke, rm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_cli_round_trip(server: Any, iris_models: dict[str, Path], tmp_path: Path) -> None:
    spec = tmp_path / "iris.yaml"
    spec.write_text(
        f"name: iris\nartifact: {iris_models['onnx'].name}\n"
        "scaling:\n  max_instances: 2\n  idle_timeout_s: 30\ntimeout_s: 5\n"
    )
    (tmp_path / iris_models["onnx"].name).write_bytes(iris_models["onnx"].read_bytes())
    out = server.cli("deploy", "-f", str(spec)).stdout
    assert "deployed iris version 1 (onnx" in out
    out = server.cli("deploy", "iris", str(iris_models["onnx"]), "--concurrency", "8").stdout
    assert "version 2" in out

    status = json.loads(server.cli("status", "iris", "--json").stdout)
    assert status["instances"] == 0
    assert [v["version"] for v in status["versions"]] == [1, 2]
    assert status["versions"][0]["scaling"]["max_instances"] == 2
    assert status["versions"][0]["timeout_s"] == 5
    assert status["versions"][1]["scaling"]["concurrency"] == 8
    assert status["traffic"] == [{"version": 2, "percent": 100}]

    body = '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[6.7,3.0,5.2,2.3]}]}'
    result = json.loads(server.cli("invoke", "iris", "--data", body).stdout)
    assert result["model_version"] == "2"
    assert result["outputs"][0]["data"] == [2]
    result = json.loads(server.cli("invoke", "iris", "--data", body, "--version", "1").stdout)
    assert result["model_version"] == "1"
    v1 = json.loads(
        server.cli("invoke", "iris", "--data", '{"instances":[[5.1,3.5,1.4,0.2]]}').stdout
    )
    assert v1["predictions"][0]["label"] == 0
    assert json.loads(server.cli("status", "iris", "--json").stdout)["instances"] == 2

    assert "iris" in server.cli("ls").stdout
    assert "removed iris" in server.cli("rm", "iris").stdout
    failed = server.cli("status", "iris", check=False)
    assert failed.returncode == 1
    assert "not found" in failed.stderr
    assert server.worker_pids() == []


def test_cli_reports_an_unreachable_platform(server: Any) -> None:
    server.stop()
    failed = server.cli("ls", check=False)
    assert failed.returncode == 1
    assert "cannot reach zeroserve" in failed.stderr
