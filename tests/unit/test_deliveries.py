"""Webhook signatures and trigger output files."""

from __future__ import annotations

from pathlib import Path

import orjson

from zeroserve.jobs.deliveries import output_path, sign, verify, write_output
from zeroserve.jobs.queue import Delivery, Job
from zeroserve.jobs.triggers import list_matching


def test_signature_verifies_and_rejects_tampering_and_replay() -> None:
    body = b'{"id": "j1"}'
    header = sign(b"secret", 1000, body)
    assert header.startswith("t=1000,v1=")
    assert verify(b"secret", header, body, now=1000)
    assert not verify(b"other", header, body, now=1000)
    assert not verify(b"secret", header, body + b" ", now=1000)
    assert not verify(b"secret", header, body, now=1000 + 301)  # too old: a replay
    assert not verify(b"secret", "garbage", body, now=1000)


def _job(status: str, result: bytes | None) -> Job:
    return Job(
        id="j1", tenant="default", model="m", version=1, status=status,  # type: ignore[arg-type]
        priority=0, body=b"{}", header_length=None, attempts=1, max_attempts=1,
        backoff_base_s=1, backoff_max_s=1, created_at=0, run_after=0, started_at=0,
        finished_at=1, expires_at=None, idempotency_key=None, webhook=None, output_uri=None,
        source="in/a.json", result=result, error="boom" if result is None else None,
        errors=[{"attempt": 1, "at": 1, "error": "boom"}] if result is None else [],
        submitted_by=None,
    )  # fmt: skip


def _delivery(target: str) -> Delivery:
    return Delivery(1, "j1", "output", target, "pending", 0, 0.0, None, None)


def test_output_is_written_whole_as_result_or_error(tmp_path: Path) -> None:
    base = output_path(str(tmp_path), "/watched/a.json")
    assert base == f"{tmp_path}/a.json"
    assert write_output(_delivery(base), _job("succeeded", b'{"outputs": []}')) is None
    assert (tmp_path / "a.json.result.json").read_bytes() == b'{"outputs": []}'
    assert write_output(_delivery(base), _job("dead", None)) is None
    error = orjson.loads((tmp_path / "a.json.error.json").read_bytes())
    assert error["status"] == "dead"
    assert error["errors"][0]["error"] == "boom"
    assert not list(tmp_path.glob("*.partial"))
    assert write_output(_delivery(str(tmp_path / "missing" / "x")), _job("dead", None))


def test_listing_matches_the_pattern_and_skips_partial_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.txt").write_text("x")
    (tmp_path / "c.json.partial").write_text("{")
    (tmp_path / "sub").mkdir()
    found = list_matching(str(tmp_path), "*.json")
    assert [Path(f.path).name for f in found] == ["a.json"]
    assert found[0].size == 2
