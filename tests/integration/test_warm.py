"""Warm pools for predictable peaks: `zeroserve prewarm` and scheduled windows."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration


def test_prewarm_starts_instances_now_and_lets_them_go_later(
    server: Any, iris_models: dict[str, Path]
) -> None:
    server.deploy("iris", iris_models["onnx"], "--idle-timeout", "0.5", "--max-instances", "3")
    out = server.cli("prewarm", "iris", "--instances", "2", "--for", "2").stdout
    assert "2 instance(s) warm" in out
    assert server.status("iris")["instances"] == 2
    assert len(server.worker_pids()) == 2
    wait_for(lambda: server.status("iris")["instances"] == 0, timeout_s=10)
    failed = server.cli("prewarm", "iris", "--instances", "4", check=False)
    assert failed.returncode == 1
    assert "exceeds max_instances = 3" in failed.stderr


def test_scheduled_warm_window_keeps_instances(
    server: Any, iris_models: dict[str, Path], tmp_path: Path
) -> None:
    now = datetime.now()
    start = (now - timedelta(minutes=1)).strftime("%H:%M")
    end = (now + timedelta(minutes=30)).strftime("%H:%M")
    spec = tmp_path / "iris.yaml"
    spec.write_text(
        f"name: iris\nartifact: {iris_models['onnx']}\n"
        "scaling:\n  idle_timeout_s: 0.5\n  warm:\n"
        f"    - {{days: '*', start: '{start}', end: '{end}', min_instances: 2}}\n"
    )
    server.cli("deploy", "-f", str(spec))
    wait_for(lambda: server.status("iris")["instances"] == 2, timeout_s=15)
    assert server.status("iris")["versions"][0]["scaling"]["warm"][0]["min_instances"] == 2
