"""The simulator predicts what the platform does: a short trace replayed against a real
platform gives instance-seconds and cold starts within 15 % of `zeroserve simulate`."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

BODY = {
    "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
}


def test_simulation_matches_a_real_replay(
    server: Any, iris_models: dict[str, Path], tmp_path: Path
) -> None:
    # Three short bursts, idle long enough in between to go back to zero each time.
    trace = [b * 4.0 + i * 0.1 for b in range(3) for i in range(6)]
    trace_file = tmp_path / "trace.csv"
    trace_file.write_text("arrival_s\n" + "".join(f"{t}\n" for t in trace))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: iris\nartifact: {iris_models['onnx']}\nmemory_mb: 512\n"
        "scaling:\n  idle_timeout_s: 1\n  max_instances: 2\n"
    )
    server.cli("deploy", "-f", str(spec))

    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            v = server.status("iris")["versions"][0]
            samples.append((time.monotonic(), v["instances"] + v["starting"] + v["stopping"]))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.monotonic()
    with server.client() as c:
        for t in trace:
            time.sleep(max(0.0, start + t - time.monotonic()))
            assert c.post("/v2/models/iris/infer", json=BODY).status_code == 200
    wait_for(lambda: samples and samples[-1][1] == 0 and time.monotonic() - start > 9, 15)
    done.set()
    sampler.join()
    real_seconds = sum((b[0] - a[0]) * a[1] for a, b in itertools.pairwise(samples))
    with server.client() as c:
        metrics = c.get("/metrics").text
    real_cold = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('zeroserve_cold_starts_total{model="iris"')
    )

    out = subprocess.run(
        [sys.executable, "-m", "zeroserve.cli", "simulate", str(trace_file), "--spec", str(spec),
         "--start-time", "0.02", "--service-time", "0.002", "--json"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    predicted = json.loads(out)
    assert predicted["cold_starts"] == real_cold == 3
    assert predicted["instance_seconds"] == pytest.approx(real_seconds, rel=0.15)
