"""Scale from zero, scale to zero, warm pools and the max-instances ceiling, against a real
platform with real worker processes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

X, _ = load_iris(return_X_y=True)


def _v2(rows: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "X", "datatype": "FP32", "shape": list(rows.shape),
             "data": rows.astype(np.float32).reshape(-1).tolist()}
        ]
    }  # fmt: skip


def _labels(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    out = next(o for o in response.json()["outputs"] if o["name"] == "label")
    labels: list[int] = out["data"]
    return labels


def test_first_request_to_cold_model_is_answered(server: Any, iris_models: dict[str, Path]) -> None:
    server.deploy("iris", iris_models["onnx"])
    assert server.status("iris")["instances"] == 0
    assert server.worker_pids() == []
    with server.client() as c:
        r = c.post("/v2/models/iris/infer", json=_v2(X[[0, 50, 100]]))
        assert _labels(r) == [0, 1, 2]
        assert r.headers["x-zeroserve-cold-start"] == "true"
        r = c.post("/v2/models/iris/infer", json=_v2(X[[0]]))
        assert r.headers["x-zeroserve-cold-start"] == "false"
    assert server.status("iris")["instances"] == 1


def test_idle_instances_scale_to_zero_and_back(server: Any, iris_models: dict[str, Path]) -> None:
    server.deploy("iris", iris_models["onnx"], "--idle-timeout", "1")
    with server.client() as c:
        assert _labels(c.post("/v2/models/iris/infer", json=_v2(X[[0]]))) == [0]
        assert server.status("iris")["instances"] == 1
        started = time.monotonic()
        wait_for(lambda: server.status("iris")["instances"] == 0, timeout_s=10)
        assert time.monotonic() - started >= 0.8  # not before the idle timeout
        wait_for(lambda: server.worker_pids() == [], timeout_s=5)
        r = c.post("/v2/models/iris/infer", json=_v2(X[[100]]))
        assert _labels(r) == [2]
        assert r.headers["x-zeroserve-cold-start"] == "true"
    assert server.status("iris")["instances"] == 1


def test_burst_on_cold_model_respects_max_instances(
    server: Any, iris_models: dict[str, Path]
) -> None:
    server.deploy("iris", iris_models["onnx"], "--max-instances", "2", "--concurrency", "2")
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, len(server.worker_pids()))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    rows = [X[[i]] for i in range(0, 150, 5)] + [X[[0]], X[[50]]]
    assert len(rows) == 32
    expected = joblib.load(iris_models["joblib"]).predict(np.vstack(rows)).tolist()
    try:
        with server.client() as c, ThreadPoolExecutor(max_workers=32) as pool:
            responses = list(
                pool.map(lambda r: c.post("/v2/models/iris/infer", json=_v2(r)), rows[:32])
            )
    finally:
        stop.set()
        sampler.join()
    assert [_labels(r)[0] for r in responses] == expected
    assert 1 <= peak <= 2
    assert server.status("iris")["instances"] <= 2


def test_min_instances_keeps_a_warm_pool(server: Any, iris_models: dict[str, Path]) -> None:
    server.deploy("iris", iris_models["onnx"], "--min-instances", "1", "--idle-timeout", "0.5")
    wait_for(lambda: server.status("iris")["instances"] == 1, timeout_s=15)
    time.sleep(1.5)  # three idle timeouts: the warm instance stays
    assert server.status("iris")["instances"] == 1
    with server.client() as c:
        r = c.post("/v2/models/iris/infer", json=_v2(X[[0]]))
        assert _labels(r) == [0]
        assert r.headers["x-zeroserve-cold-start"] == "false"
    # A new version takes the traffic and the warm pool; the old one scales to zero.
    assert server.deploy("iris", iris_models["onnx"], "--min-instances", "1") == 2
    status = wait_for(
        lambda: (
            (s := server.status("iris"))["versions"][0]["instances"] == 0
            and s["versions"][1]["instances"] == 1
            and s
        ),
        timeout_s=15,
    )
    assert status["traffic"] == [{"version": 2, "percent": 100}]


def test_restart_keeps_deployments(server_factory: Any, iris_models: dict[str, Path]) -> None:
    first = server_factory()
    first.deploy("iris", iris_models["onnx"])
    first.deploy("iris", iris_models["onnx"], "--max-instances", "3")
    first.deploy("iris-sk", iris_models["joblib"], "--trust")
    with first.client() as c:
        assert _labels(c.post("/v2/models/iris/infer", json=_v2(X[[0]]))) == [0]
    running = first.worker_pids()
    assert len(running) == 1
    first.stop()
    assert not any(Path(f"/proc/{pid}").exists() for pid in running)  # no orphan instances
    second = server_factory(state_dir=first.state_dir)
    status = second.status("iris")
    assert [v["version"] for v in status["versions"]] == [1, 2]
    assert status["versions"][1]["scaling"]["max_instances"] == 3
    with second.client() as c:
        assert _labels(c.post("/v2/models/iris/infer", json=_v2(X[[50]]))) == [1]
        r = c.post("/v1/models/iris-sk:predict", json={"instances": X[[100]].tolist()})
        assert r.json()["predictions"][0]["label"] == 2


def test_a_burst_scales_out_and_back_to_zero(server: Any) -> None:
    slow = Path(__file__).parent / "models" / "slow.py"  # load 1.5 s; predict sleeps delay_s
    server.deploy("slow", slow, "--concurrency", "1", "--max-instances", "4",
                  "--idle-timeout", "1", "--snapshot")  # fmt: skip
    wait_for(lambda: server.status("slow")["versions"][0]["snapshot_bytes"], timeout_s=30)
    body = {"inputs": [{"name": "delay_s", "datatype": "FP64", "shape": [1], "data": [0.3]}]}
    peak = 0
    with server.client() as c, ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(c.post, "/v2/models/slow/infer", json=body) for _ in range(24)]
        while not all(f.done() for f in futures):
            peak = max(peak, server.status("slow")["instances"])
            time.sleep(0.05)
        assert all(f.result().status_code == 200 for f in futures)
    assert 2 <= peak <= 4
    finished = time.monotonic()
    wait_for(lambda: server.status("slow")["instances"] == 0, timeout_s=10)
    assert time.monotonic() - finished <= 1 + 2 + 1  # idle timeout + 2 s (+ polling slack)
