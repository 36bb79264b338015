"""Asynchronous jobs against a real platform: durability across kill -9, retries and dead
letters, idempotency, signed webhooks, file triggers, the response cache."""

from __future__ import annotations

import collections
import http.server
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Server, wait_for
from zeroserve.jobs.deliveries import SIGNATURE_HEADER, verify

MODELS = Path(__file__).parent / "models"


def ledger_request(key: str, log: Path, work_s: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "key", "datatype": "BYTES", "shape": [1], "data": [key]},
            {"name": "log", "datatype": "BYTES", "shape": [1], "data": [str(log)]},
            {"name": "work_s", "datatype": "FP64", "shape": [1], "data": [work_s]},
        ],
        **extra,
    }


def ledger(log: Path) -> collections.Counter[str]:
    if not log.exists():
        return collections.Counter()
    return collections.Counter(line.split()[0] for line in log.read_text().splitlines())


def all_jobs(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 500, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/jobs", params=query).json()
        jobs += page["jobs"]
        cursor = page["next_cursor"]
        if cursor is None:
            return jobs


def wait_finished(client: httpx.Client, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "dead", "cancelled") else None

    job: dict[str, Any] = wait_for(finished, timeout_s)
    return job


def spec_file(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def test_200_jobs_survive_kill_9_of_the_platform(server_factory: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    server: Server = server_factory(state_dir=state)
    server.deploy(
        "ledger", MODELS / "ledger.py", "--max-instances", "2", "--concurrency", "1",
        "--idle-timeout", "1",
    )  # fmt: skip
    log = tmp_path / "ledger.log"
    keys = [f"job-{i:03d}" for i in range(200)]
    ids: dict[str, str] = {}
    with server.client() as c:
        for key in keys:
            r = c.post(
                "/api/models/ledger/jobs",
                json=ledger_request(key, log, work_s=0.01),
                headers={"Idempotency-Key": key},
            )
            assert r.status_code == 202, r.text
            ids[key] = r.json()["id"]
        # Kill the platform while jobs run: some done, some running, most queued.
        wait_for(lambda: sum(ledger(log).values()) >= 30, 60)
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    done_before = ledger(log)
    assert 0 < len(done_before) < 200

    server.start()  # same state dir
    with server.client() as c:
        wait_for(lambda: len(all_jobs(c, status="succeeded")) == 200, 120)
        jobs = {j["id"]: j for j in all_jobs(c)}
        assert len(jobs) == 200  # none lost, none made twice
        for key in keys:
            job = c.get(f"/api/jobs/{ids[key]}").json()
            assert job["status"] == "succeeded"
            # The one result recorded is this job's own.
            assert job["result"]["outputs"][0]["data"] == [key]
        # A client retrying its submission after the crash gets the same job back.
        for key in keys[:20]:
            r = c.post(
                "/api/models/ledger/jobs",
                json=ledger_request(key, log, work_s=0.01),
                headers={"Idempotency-Key": key},
            )
            assert r.status_code == 202
            assert r.headers["idempotent-replayed"] == "true"
            assert r.json()["id"] == ids[key]
        assert len(all_jobs(c)) == 200
        # The backlog is gone: the version scales back to zero.
        wait_for(lambda: server.status("ledger")["instances"] == 0, 30)

    seen = ledger(log)
    assert set(seen) == set(keys)  # every job ran
    # Execution is at least once: only a job that was running at the kill may have run
    # twice (its result reached no one); every other key completed on an instance once.
    twice = {k for k, n in seen.items() if n > 1}
    assert all(seen[k] <= 2 for k in seen)
    for key in twice:
        errors = jobs[ids[key]]["errors"]
        assert any("the platform running it stopped" in e["error"] for e in errors)
        lines = [line.split() for line in log.read_text().splitlines()]
        attempts = [fields[2] for fields in lines if fields[0] == key]
        assert attempts == ["1", "2"]  # the model was told it was a second attempt
    assert len(twice) <= 2  # at most the instances x concurrency that were busy
    # The model got each job's idempotency key on every attempt, so its side effect, made
    # idempotent with the key, happened exactly once per key: none lost, none twice.
    effects = sorted(p.name for p in Path(f"{log}.effects").iterdir())
    assert effects == sorted(keys)


def test_a_poison_job_is_dead_lettered_while_the_others_succeed(
    server: Server, tmp_path: Path
) -> None:
    spec = spec_file(
        tmp_path, "crashy.yaml",
        {"jobs": {"max_attempts": 2, "backoff_base_s": 0.05, "backoff_max_s": 0.1}},
    )  # fmt: skip
    server.deploy("crashy", MODELS / "crashy.py", "-f", str(spec))

    def request(x: int) -> dict[str, Any]:
        return {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [x]}]}

    with server.client() as c:
        poison = c.post("/api/models/crashy/jobs", json=request(-1)).json()["id"]
        good = [
            c.post("/api/models/crashy/jobs", json=request(x)).json()["id"] for x in range(1, 9)
        ]
        results = [wait_finished(c, job_id) for job_id in good]
        assert [r["status"] for r in results] == ["succeeded"] * 8
        assert [r["result"]["outputs"][0]["data"] for r in results] == [
            [2 * x] for x in range(1, 9)
        ]
        dead = wait_finished(c, poison)
        assert dead["status"] == "dead"
        assert dead["attempts"] == 2
        assert len(dead["errors"]) == 2
        assert all("InstanceCrashed" in e["error"] for e in dead["errors"])
        letters = c.get("/api/dead-letters").json()["jobs"]
        assert [j["id"] for j in letters] == [poison]

        # Requeued, it runs its attempts again and comes back; deleted, it is gone.
        assert c.post(f"/api/dead-letters/{poison}/requeue").json()["status"] == "queued"
        again = wait_finished(c, poison)
        assert (again["status"], again["attempts"], len(again["errors"])) == ("dead", 2, 4)
        assert c.delete(f"/api/dead-letters/{poison}").status_code == 200
        assert c.get(f"/api/jobs/{poison}").status_code == 404
        assert c.delete(f"/api/dead-letters/{poison}").status_code == 404
    listed = server.cli("dead-letters", "ls", "--json").stdout
    assert json.loads(listed)["jobs"] == []


def test_bad_job_requests_get_clear_errors(server: Server, iris_models: dict[str, Path]) -> None:
    server.deploy("iris", iris_models["onnx"])
    good = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    with server.client() as c:
        cases = [
            ("/api/models/nope/jobs", good, {}, 404),
            ("/api/models/iris/versions/9/jobs", good, {}, 404),
            ("/api/models/iris/jobs", {"inputs": [{"name": "X"}]}, {}, 400),
            ("/api/models/iris/jobs", {**good, "webhook": "ftp://x"}, {}, 422),
            ("/api/models/iris/jobs", {**good, "priority": "high"}, {}, 422),
            ("/api/models/iris/jobs", good, {"Idempotency-Key": ""}, 400),
        ]
        for path, body, headers, status in cases:
            r = c.post(path, json=body, headers=headers)
            assert r.status_code == status, (path, body, r.text)
            assert r.json()["error"]
        r = c.post("/api/models/iris/jobs", json=good, headers={"Idempotency-Key": "k"})
        assert r.status_code == 202
        changed = {"inputs": [{**good["inputs"][0], "data": [4, 3, 2, 1]}]}
        r = c.post("/api/models/iris/jobs", json=changed, headers={"Idempotency-Key": "k"})
        assert r.status_code == 422
        assert "different request" in r.json()["error"]
        assert c.get("/api/jobs/nope").status_code == 404
        assert c.get("/api/jobs", params={"status": "lost"}).status_code == 400
        assert c.get("/api/jobs", params={"limit": "0"}).status_code == 400
        assert c.get("/api/jobs", params={"cursor": "x"}).status_code == 400
        # A trigger on a folder that is not there is refused now, not logged every second.
        missing = {"name": "t", "model": "iris", "watch": "/no/such/folder"}
        r = c.post("/api/triggers", json=missing)
        assert r.status_code == 422
        assert "/no/such/folder" in r.json()["error"]
        assert c.get("/api/triggers").json()["triggers"] == []
        for bad in ("inf", "nan", "-1", "x"):
            assert c.get("/api/audit", params={"limit": bad}).status_code == 400, bad


def test_only_a_queued_job_can_be_cancelled(server: Server, tmp_path: Path) -> None:
    server.deploy("ledger", MODELS / "ledger.py", "--max-instances", "1", "--concurrency", "1")
    log = tmp_path / "ledger.log"
    with server.client() as c:
        first = c.post("/api/models/ledger/jobs", json=ledger_request("a", log, 1.5)).json()
        second = c.post("/api/models/ledger/jobs", json=ledger_request("b", log)).json()
        wait_for(lambda: c.get(f"/api/jobs/{first['id']}").json()["status"] == "running", 30)
        r = c.delete(f"/api/jobs/{first['id']}")
        assert r.status_code == 409
        assert "running" in r.json()["error"]
        cancelled = server.cli("jobs", "cancel", second["id"]).stdout
        assert "cancelled" in cancelled
        assert wait_finished(c, first["id"])["status"] == "succeeded"
        assert c.get(f"/api/jobs/{second['id']}").json()["status"] == "cancelled"
    assert ledger(log) == {"a": 1}


class _Receiver(http.server.BaseHTTPRequestHandler):
    failures_left = 2
    received: list[tuple[dict[str, str], bytes]] = []  # noqa: RUF012

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append((dict(self.headers), body))
        status = 500 if type(self).failures_left > 0 else 204
        type(self).failures_left -= 1
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.failures_left = 2
    _Receiver.received = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    httpd.shutdown()
    httpd.server_close()


def test_webhook_is_signed_and_retried_until_delivered(
    server_factory: Any, receiver: str, tmp_path: Path
) -> None:
    server = server_factory(ZEROSERVE_WEBHOOK_SECRET="s3cret", ZEROSERVE_DELIVERY_BACKOFF_S="0.1")
    server.deploy("ledger", MODELS / "ledger.py")
    log = tmp_path / "ledger.log"
    with server.client() as c:
        r = c.post("/api/models/ledger/jobs", json=ledger_request("w", log, webhook=receiver))
        job_id = r.json()["id"]
        assert wait_finished(c, job_id)["status"] == "succeeded"

        def delivered() -> dict[str, Any] | None:
            d = c.get(f"/api/jobs/{job_id}").json()["deliveries"][0]
            return d if d["status"] == "delivered" else None

        delivery = wait_for(delivered, 30)
    assert delivery["attempts"] == 3
    assert delivery["last_error"] is None
    assert len(_Receiver.received) == 3
    headers, body = _Receiver.received[-1]
    assert headers["X-Zeroserve-Delivery-Attempt"] == "3"
    assert verify(b"s3cret", headers[SIGNATURE_HEADER], body, now=time.time())
    assert not verify(b"wrong", headers[SIGNATURE_HEADER], body, now=time.time())
    payload = json.loads(body)
    assert (payload["id"], payload["status"]) == (job_id, "succeeded")
    assert payload["result"]["outputs"][0]["data"] == ["w"]


def _drop(folder: Path, name: str, doc: dict[str, Any]) -> None:
    """Write a file the way producers should: whole, then renamed into place."""
    partial = folder / f".{name}.tmp"
    partial.write_text(json.dumps(doc))
    partial.rename(folder / name)


def test_trigger_takes_each_file_once_also_across_a_restart(
    server_factory: Any, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    outbox.mkdir()
    log = tmp_path / "ledger.log"
    server = server_factory(state_dir=state, ZEROSERVE_TRIGGER_POLL_S="0.2")
    server.deploy("ledger", MODELS / "ledger.py")
    server.cli(
        "trigger", "add", "docs", "--model", "ledger", "--watch", str(inbox),
        "--pattern", "*.json", "--output", str(outbox),
    )  # fmt: skip
    for name in ("a", "b", "c"):
        _drop(inbox, f"{name}.json", ledger_request(name, log))
    (inbox / "ignored.txt").write_text("not a match")
    wait_for(lambda: len(list(outbox.glob("*.result.json"))) == 3, 30)
    result = json.loads((outbox / "a.json.result.json").read_text())
    assert result["outputs"][0]["data"] == ["a"]

    server.stop()
    server.start()
    _drop(inbox, "d.json", ledger_request("d", log))
    wait_for(lambda: (outbox / "d.json.result.json").exists(), 30)
    # A file rewritten with new content is new work; the same content is not.
    _drop(inbox, "a.json", ledger_request("a2", log))
    wait_for(lambda: ledger(log)["a2"] == 1, 30)
    time.sleep(1.0)  # five more scans: nothing else may be taken
    assert ledger(log) == {"a": 1, "b": 1, "c": 1, "d": 1, "a2": 1}
    with server.client() as c:
        jobs = all_jobs(c)
    assert len(jobs) == 5
    assert all(j["status"] == "succeeded" for j in jobs)
    assert sorted(Path(j["source"]).name for j in jobs) == [
        "a.json",
        "a.json",
        "b.json",
        "c.json",
        "d.json",
    ]
    listed = server.cli("trigger", "ls").stdout
    assert "docs" in listed
    server.cli("trigger", "rm", "docs")
    assert "docs" not in server.cli("trigger", "ls").stdout


def test_response_cache_answers_repeats_without_an_instance_until_the_ttl(
    server: Server, tmp_path: Path
) -> None:
    spec = spec_file(tmp_path, "cached.yaml", {"cache": {"ttl_s": 2, "max_entries": 10}})
    server.deploy("cached", MODELS / "ledger.py", "-f", str(spec))
    server.deploy("plain", MODELS / "ledger.py")
    log = tmp_path / "ledger.log"
    body = ledger_request("q", log)
    with server.client() as c:
        first = c.post("/v2/models/cached/infer", json=body)
        assert first.headers["x-zeroserve-cache"] == "miss"
        second = c.post("/v2/models/cached/infer", json=body)
        assert second.status_code == 200
        assert second.headers["x-zeroserve-cache"] == "hit"
        assert second.json() == first.json()
        assert ledger(log)["q"] == 1  # the instance ran once
        other = c.post("/v2/models/cached/infer", json=ledger_request("r", log))
        assert other.headers["x-zeroserve-cache"] == "miss"
        # Without a cache policy every request runs.
        c.post("/v2/models/plain/infer", json=ledger_request("p", log))
        plain = c.post("/v2/models/plain/infer", json=ledger_request("p", log))
        assert "x-zeroserve-cache" not in plain.headers
        assert ledger(log)["p"] == 2
        time.sleep(2.1)
        expired = c.post("/v2/models/cached/infer", json=body)
        assert expired.headers["x-zeroserve-cache"] == "miss"
        assert ledger(log)["q"] == 2
        metrics = c.get("/metrics").text
    assert 'zeroserve_response_cache_total{model="cached",result="hit",version="1"} 1.0' in metrics
    assert 'zeroserve_response_cache_total{model="cached",result="miss",version="1"} 3.0' in metrics


def test_idempotency_key_on_sync_inference_returns_the_first_response(
    server: Server, tmp_path: Path
) -> None:
    server.deploy("ledger", MODELS / "ledger.py")
    log = tmp_path / "ledger.log"
    with server.client() as c:
        headers = {"Idempotency-Key": "pay-1"}
        first = c.post("/v2/models/ledger/infer", json=ledger_request("x", log), headers=headers)
        again = c.post("/v2/models/ledger/infer", json=ledger_request("x", log), headers=headers)
        assert first.status_code == again.status_code == 200
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content
        other = c.post("/v2/models/ledger/infer", json=ledger_request("y", log), headers=headers)
        assert other.status_code == 422
        assert "different request" in other.json()["error"]
    assert ledger(log) == {"x": 1}
    # The model saw the key it was called with (and the replay never reached it).
    assert [p.name for p in Path(f"{log}.effects").iterdir()] == ["pay-1"]


def test_cli_submits_a_folder_with_a_progress_bar_and_waits(server: Server, tmp_path: Path) -> None:
    server.deploy("ledger", MODELS / "ledger.py")
    folder = tmp_path / "batch"
    folder.mkdir()
    log = tmp_path / "ledger.log"
    for i in range(5):
        (folder / f"{i}.json").write_text(json.dumps(ledger_request(f"f{i}", log)))
    out = server.cli("jobs", "submit", "ledger", "--file-dir", str(folder), "--wait")
    assert "submitting" in out.stderr
    assert "5 succeeded" in out.stderr
    ids = json.loads(out.stdout)["jobs"]
    assert sorted(ids) == [f"{i}.json" for i in range(5)]
    # Again: the same files are not submitted twice.
    again = json.loads(server.cli("jobs", "submit", "ledger", "--file-dir", str(folder)).stdout)
    assert again["jobs"] == ids
    job = json.loads(server.cli("jobs", "get", ids["0.json"]).stdout)
    assert job["result"]["outputs"][0]["data"] == ["f0"]
    listed = server.cli("jobs", "ls", "--model", "ledger", "--status", "succeeded").stdout
    assert ids["0.json"] in listed
    single = server.cli(
        "jobs", "submit", "ledger", "--data", json.dumps(ledger_request("s", log)), "--wait"
    )
    assert json.loads(single.stdout)["status"] == "succeeded"
    assert sorted(ledger(log)) == ["f0", "f1", "f2", "f3", "f4", "s"]
