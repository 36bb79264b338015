"""Dynamic batching and backpressure against a real platform."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

MODELS = Path(__file__).parent / "models"


def _body(value: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [value, value]}]}


def test_concurrent_requests_share_batches_and_get_their_own_rows(server: Any) -> None:
    server.deploy(
        "bs", MODELS / "batchsize.py", "--max-batch-size", "8", "--max-batch-delay-ms", "20",
        "--concurrency", "1", "--max-instances", "1",
    )  # fmt: skip
    with server.client() as c:
        c.post("/v2/models/bs/infer", json=_body(0))  # warm
        with ThreadPoolExecutor(max_workers=16) as pool:
            responses = list(
                pool.map(lambda v: c.post("/v2/models/bs/infer", json=_body(v)), range(16))
            )
        for value, r in enumerate(responses):
            assert r.status_code == 200, r.text
            out = {o["name"]: o["data"] for o in r.json()["outputs"]}
            assert out["y"] == [2.0 * value, 2.0 * value]  # its own rows, not a neighbour's
            assert int(r.headers["x-zeroserve-batch-size"]) == out["rows"][0]
        sizes = [int(r.headers["x-zeroserve-batch-size"]) for r in responses]
        assert max(sizes) > 1
        assert max(sizes) <= 8
        r = c.post("/v2/models/bs/infer", json=_body(1))  # alone, nothing running: at once
        assert r.headers["x-zeroserve-batch-size"] == "1"


def test_a_flood_past_max_queue_is_shed_with_429_and_nothing_accepted_is_lost(server: Any) -> None:
    server.deploy(
        "bs", MODELS / "batchsize.py", "--max-queue", "4", "--concurrency", "1",
        "--max-instances", "1",
    )  # fmt: skip
    with server.client() as c:
        c.post("/v2/models/bs/infer", json=_body(0))
        with ThreadPoolExecutor(max_workers=24) as pool:
            responses = list(
                pool.map(lambda v: c.post("/v2/models/bs/infer", json=_body(v)), range(24))
            )
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429}
    assert codes.count(429) > 0
    assert codes.count(200) >= 5  # the one running and the four queued at least
    for value, r in enumerate(responses):
        if r.status_code == 429:
            assert r.headers["retry-after"] == "1"
            assert "max_queue" in r.json()["error"]
        else:
            assert r.json()["outputs"][0]["data"] == [2.0 * value, 2.0 * value]


def test_deadlines_are_refused_at_admission_or_answered_504_while_queued(server: Any) -> None:
    server.deploy("slow", MODELS / "slow.py", "--concurrency", "1", "--max-instances", "1")
    slow = {"inputs": [{"name": "delay_s", "datatype": "FP64", "shape": [1], "data": [1.0]}]}
    with server.client() as c, ThreadPoolExecutor(max_workers=2) as pool:
        assert c.post("/v2/models/slow/infer", json=slow).status_code == 200  # learns ~1 s calls
        busy = pool.submit(c.post, "/v2/models/slow/infer", json=slow)
        time.sleep(0.2)
        r = c.post("/v2/models/slow/infer", json=slow, headers={"x-zeroserve-deadline-ms": "50"})
        assert r.status_code == 503
        assert "exceeds the request's deadline of 50 ms" in r.json()["error"]
        assert r.headers["retry-after"] == "1"
        started = time.monotonic()
        r = c.post("/v2/models/slow/infer", json=slow, headers={"x-zeroserve-deadline-ms": "300"})
        assert r.status_code == 504, r.text
        assert "deadline of 300 ms passed" in r.json()["error"]
        assert time.monotonic() - started < 0.8
        assert busy.result().status_code == 200
        r = c.post("/v2/models/slow/infer", json=slow, headers={"x-zeroserve-deadline-ms": "soon"})
        assert r.status_code == 400
