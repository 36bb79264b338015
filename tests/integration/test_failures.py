"""Crashed, killed and stuck instances are detected and replaced; clients get 503/504 with a
clear message, or their request is retried once on a fresh instance."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import descendants, wait_for

pytestmark = pytest.mark.integration

MODELS = Path(__file__).parent / "models"


def _delay(seconds: float) -> dict[str, Any]:
    return {"inputs": [{"name": "delay_s", "datatype": "FP64", "shape": [1], "data": [seconds]}]}


def _pid(r: Any) -> int:
    assert r.status_code == 200, r.text
    return int(r.json()["outputs"][0]["data"][0])


def test_worker_killed_while_loading_is_replaced(server: Any) -> None:
    server.deploy("slow", MODELS / "slow.py")  # load() takes 1.5 s
    with server.client() as c, ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(c.post, "/v2/models/slow/infer", json=_delay(0))
        victim = wait_for(server.worker_pids, timeout_s=10)[0]
        os.kill(victim, signal.SIGKILL)
        r = pending.result(timeout=30)
        assert _pid(r) != victim
        assert _pid(c.post("/v2/models/slow/infer", json=_delay(0))) != victim
    assert "killed by SIGKILL while loading" in server.log()


def test_worker_killed_mid_request_is_retried_on_a_fresh_instance(server: Any) -> None:
    server.deploy("slow", MODELS / "slow.py", "--concurrency", "8", "--max-instances", "1")
    with server.client() as c:
        first = _pid(c.post("/v2/models/slow/infer", json=_delay(0)))
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [
                pool.submit(c.post, "/v2/models/slow/infer", json=_delay(1.0)) for _ in range(8)
            ]
            time.sleep(0.5)  # all eight are in flight on the one instance
            os.kill(first, signal.SIGKILL)
            pids = {_pid(f.result(timeout=30)) for f in futures}
        assert first not in pids
        assert len(pids) == 1
        assert _pid(c.post("/v2/models/slow/infer", json=_delay(0))) not in (first,)
    assert server.status("slow")["instances"] == 1


def test_model_that_crashes_on_an_input_gets_503_and_recovers(server: Any) -> None:
    server.deploy("crashy", MODELS / "crashy.py")
    poison = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [-1]}]}
    fine = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [21]}]}
    with server.client() as c:
        r = c.post("/v2/models/crashy/infer", json=poison)
        assert r.status_code == 503
        assert "killed by SIGKILL" in r.json()["error"]
        assert "retry-after" in r.headers
        r = c.post("/v2/models/crashy/infer", json=fine)
        assert r.status_code == 200
        assert r.json()["outputs"][0]["data"] == [42]


def test_stuck_invocation_times_out_with_504_and_instance_is_replaced(server: Any) -> None:
    server.deploy("slow", MODELS / "slow.py", "--timeout", "0.5")
    with server.client() as c:
        before = _pid(c.post("/v2/models/slow/infer", json=_delay(0)))
        started = time.monotonic()
        r = c.post("/v2/models/slow/infer", json=_delay(30))
        assert r.status_code == 504
        assert "timeout of 0.5 s" in r.json()["error"]
        assert time.monotonic() - started < 5
        wait_for(lambda: before not in server.worker_pids(), timeout_s=5)
        assert _pid(c.post("/v2/models/slow/infer", json=_delay(0))) != before


def test_model_error_is_422_with_the_models_message(server: Any) -> None:
    server.deploy("crashy", MODELS / "crashy.py")
    zero = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [0]}]}
    with server.client() as c:
        r = c.post("/v2/models/crashy/infer", json=zero)
        assert r.status_code == 422
        assert "ValueError: x must not be zero" in r.json()["error"]
        pid_before = server.worker_pids()
        r = c.post(
            "/v2/models/crashy/infer", json={**zero, "inputs": [{**zero["inputs"][0], "data": [1]}]}
        )
        assert r.status_code == 200
        assert server.worker_pids() == pid_before  # a model error does not cost the instance


def test_kill_9_of_the_platform_leaves_no_process_behind(server: Any) -> None:
    server.deploy("slow", MODELS / "slow.py")
    with server.client() as c:
        _pid(c.post("/v2/models/slow/infer", json=_delay(0)))
    family = [pid for pid, _ in descendants(server.proc.pid)]
    assert len(family) >= 2  # the fork server and the instance (and maybe templates)
    server.proc.kill()
    server.proc.wait()
    wait_for(lambda: not any(_alive(pid) for pid in family), timeout_s=10)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"
