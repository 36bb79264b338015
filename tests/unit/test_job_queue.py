"""The SQLite job queue: leases, fencing, retries, dead letters, idempotency, expiry."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from zeroserve.jobs import IdempotencyConflict, JobStateError, NewJob, SqliteJobQueue, Trigger
from zeroserve.jobs.queue import Lease, TriggerFile
from zeroserve.jobs.retry import backoff_s, next_attempt_at


def new_job(model: str = "m", version: int = 1, **overrides: object) -> NewJob:
    fields: dict[str, object] = {
        "tenant": "default",
        "model": model,
        "version": version,
        "body": b'{"inputs": []}',
        "header_length": None,
        "request_sha256": "a" * 64,
        "max_attempts": 3,
        "backoff_base_s": 1.0,
        "backoff_max_s": 60.0,
        "result_ttl_s": 100.0,
    }
    fields.update(overrides)
    return NewJob(**fields)  # type: ignore[arg-type]


def lease1(
    q: SqliteJobQueue,
    owner: str,
    now: float,
    visibility_s: float,
    exclude: set[tuple[str, int]],
) -> Lease | None:
    found = q.lease(owner, now, visibility_s, exclude)
    return found[0] if found else None


@pytest.fixture
def queue(tmp_path: Path) -> SqliteJobQueue:
    return SqliteJobQueue(tmp_path / "jobs.db")


def test_submitted_job_is_on_disk_before_submit_returns(tmp_path: Path) -> None:
    q = SqliteJobQueue(tmp_path / "jobs.db")
    job, created = q.submit(new_job(), now=10.0)
    assert created
    # A second connection (another process after a crash) sees it at once.
    other = SqliteJobQueue(tmp_path / "jobs.db")
    found = other.get(job.id)
    assert found is not None
    assert found.status == "queued"
    assert found.body == b'{"inputs": []}'


def test_lease_takes_highest_priority_then_oldest(queue: SqliteJobQueue) -> None:
    low, _ = queue.submit(new_job(priority=0), now=1.0)
    high, _ = queue.submit(new_job(priority=5), now=2.0)
    low2, _ = queue.submit(new_job(priority=0), now=3.0)
    order = []
    while lease := lease1(queue, "w", now=10.0, visibility_s=30, exclude=set()):
        order.append(lease.job.id)
    assert order == [high.id, low.id, low2.id]


def test_lease_skips_excluded_versions(queue: SqliteJobQueue) -> None:
    a, _ = queue.submit(new_job("a"), now=1.0)
    b, _ = queue.submit(new_job("b", 2), now=2.0)
    lease = lease1(queue, "w", now=5.0, visibility_s=30, exclude={("a", 1)})
    assert lease is not None
    assert lease.job.id == b.id
    assert lease1(queue, "w", now=5.0, visibility_s=30, exclude={("a", 1)}) is None
    assert a.id != b.id


def test_one_transaction_leases_a_batch_within_each_versions_room(
    queue: SqliteJobQueue,
) -> None:
    for i in range(6):
        queue.submit(new_job("a", priority=i % 2), now=float(i))
    for i in range(3):
        queue.submit(new_job("b"), now=10.0 + i)
    room = {("a", 1): 2, ("b", 1): 5}
    leases = queue.lease("w", 20.0, 30, set(), room=lambda k: room[k], limit=10)
    got = [(lease.job.model, lease.job.priority) for lease in leases]
    # Two of a (its room; the higher priority first), then all of b.
    assert got == [("a", 1), ("a", 1), ("b", 0), ("b", 0), ("b", 0)]
    assert len({lease.token for lease in leases}) == 1  # each job's first lease
    assert all(queue.get(lease.job.id).status == "running" for lease in leases)  # type: ignore[union-attr]
    assert queue.lease("w", 20.0, 30, {("a", 1)}, room=lambda k: 9, limit=10) == []


def test_stale_lease_cannot_record_a_result(queue: SqliteJobQueue) -> None:
    job, _ = queue.submit(new_job(), now=0.0)
    first = lease1(queue, "w1", now=1.0, visibility_s=5, exclude=set())
    assert first is not None
    # w1 stalls past its visibility timeout; the job is handed to w2.
    assert [j.id for j in queue.reclaim(now=7.0)] == [job.id]
    second = lease1(queue, "w2", now=7.0, visibility_s=5, exclude=set())
    assert second is not None
    assert second.token != first.token
    assert not queue.complete(job.id, first.token, b"late", now=8.0)
    assert queue.fail(job.id, first.token, "late error", now=8.0, retry_at=9.0) is None
    assert queue.complete(job.id, second.token, b"result", now=9.0)
    done = queue.get(job.id)
    assert done is not None
    assert (done.status, done.result, done.attempts) == ("succeeded", b"result", 2)
    assert "lease expired" in done.errors[0]["error"]


def test_failures_retry_then_dead_letter_with_every_error(queue: SqliteJobQueue) -> None:
    job, _ = queue.submit(new_job(max_attempts=2), now=0.0)
    lease = lease1(queue, "w", now=1.0, visibility_s=30, exclude=set())
    assert lease is not None
    assert queue.fail(job.id, lease.token, "boom 1", now=2.0, retry_at=5.0) == "failed"
    assert lease1(queue, "w", now=4.0, visibility_s=30, exclude=set()) is None  # backing off
    lease = lease1(queue, "w", now=5.0, visibility_s=30, exclude=set())
    assert lease is not None
    assert queue.fail(job.id, lease.token, "boom 2", now=6.0, retry_at=None) == "dead"
    dead = queue.get(job.id)
    assert dead is not None
    assert dead.status == "dead"
    assert [e["error"] for e in dead.errors] == ["boom 1", "boom 2"]
    assert [e["attempt"] for e in dead.errors] == [1, 2]
    page, _ = queue.list_jobs(status="dead")
    assert [j.id for j in page] == [job.id]
    # Dead letters do not expire; requeued, it gets fresh attempts.
    assert queue.purge(now=1e12) == 0
    again = queue.requeue_dead(job.id, now=7.0)
    assert again is not None
    assert (again.status, again.attempts) == ("queued", 0)
    assert queue.delete_dead(job.id) is False  # no longer dead


def test_same_idempotency_key_gives_one_job(queue: SqliteJobQueue) -> None:
    first, created = queue.submit(new_job(idempotency_key="k1"), now=0.0)
    again, created_again = queue.submit(new_job(idempotency_key="k1"), now=1.0)
    assert created
    assert not created_again
    assert again.id == first.id
    with pytest.raises(IdempotencyConflict):
        queue.submit(new_job(idempotency_key="k1", request_sha256="b" * 64), now=2.0)
    # Keys are per tenant.
    other, created_other = queue.submit(new_job(idempotency_key="k1", tenant="t2"), now=3.0)
    assert created_other
    assert other.id != first.id


def test_concurrent_submits_with_one_key_make_one_job(tmp_path: Path) -> None:
    queues = [SqliteJobQueue(tmp_path / "jobs.db") for _ in range(4)]
    ids: list[str] = []

    def submit(q: SqliteJobQueue) -> None:
        for _ in range(20):
            ids.append(q.submit(new_job(idempotency_key="same"), now=0.0)[0].id)

    threads = [threading.Thread(target=submit, args=(q,)) for q in queues]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert len(ids) == 80


def test_reclaim_of_a_previous_platform_requeues_its_running_jobs(
    queue: SqliteJobQueue,
) -> None:
    a, _ = queue.submit(new_job(max_attempts=3), now=0.0)
    b, _ = queue.submit(new_job(max_attempts=1), now=0.0)
    assert lease1(queue, "old", now=1.0, visibility_s=300, exclude=set()) is not None
    assert lease1(queue, "old", now=1.0, visibility_s=300, exclude=set()) is not None
    reclaimed = {j.id: j for j in queue.reclaim(now=2.0, not_owner="new")}
    assert reclaimed[a.id].status == "failed"  # runnable again at once
    assert reclaimed[b.id].status == "dead"  # its only attempt was lost
    lease = lease1(queue, "new", now=2.0, visibility_s=300, exclude=set())
    assert lease is not None
    assert lease.job.id == a.id
    assert lease.job.attempts == 2
    # The new owner's own leases are not reclaimed.
    assert queue.reclaim(now=3.0, not_owner="new") == []


def test_heartbeat_extends_only_the_owners_leases(queue: SqliteJobQueue) -> None:
    queue.submit(new_job(), now=0.0)
    queue.submit(new_job(), now=0.0)
    assert lease1(queue, "w1", now=1.0, visibility_s=5, exclude=set()) is not None
    assert lease1(queue, "w2", now=1.0, visibility_s=5, exclude=set()) is not None
    assert queue.extend("w1", until=100.0) == 1
    reclaimed = queue.reclaim(now=50.0)
    assert len(reclaimed) == 1  # w2's lease ran out, w1's was renewed


def test_release_gives_a_job_back_without_counting_the_attempt(queue: SqliteJobQueue) -> None:
    job, _ = queue.submit(new_job(), now=0.0)
    lease = lease1(queue, "w", now=1.0, visibility_s=30, exclude=set())
    assert lease is not None
    assert queue.release(job.id, lease.token, now=2.0)
    back = queue.get(job.id)
    assert back is not None
    assert (back.status, back.attempts) == ("queued", 0)


def test_cancel_only_a_queued_job(queue: SqliteJobQueue) -> None:
    queued, _ = queue.submit(new_job(), now=0.0)
    running, _ = queue.submit(new_job(), now=0.0)
    queue.cancel(queued.id, now=0.5)
    lease = lease1(queue, "w", now=1.0, visibility_s=30, exclude=set())
    assert lease is not None
    assert lease.job.id == running.id  # the cancelled one is never leased
    with pytest.raises(JobStateError, match="running"):
        queue.cancel(running.id, now=2.0)
    assert queue.cancel("nope", now=2.0) is None


def test_results_expire_after_their_ttl(queue: SqliteJobQueue) -> None:
    job, _ = queue.submit(new_job(result_ttl_s=10.0), now=0.0)
    lease = lease1(queue, "w", now=1.0, visibility_s=30, exclude=set())
    assert lease is not None
    assert queue.complete(job.id, lease.token, b"r", now=2.0)
    assert queue.purge(now=11.9) == 0
    assert queue.purge(now=12.0) == 1
    assert queue.get(job.id) is None


def test_paging_newest_first(queue: SqliteJobQueue) -> None:
    ids = [queue.submit(new_job(), now=float(i))[0].id for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = queue.list_jobs(limit=3, before=cursor)
        seen += [j.id for j in page]
        if cursor is None:
            break
    assert seen == ids[::-1]


def test_backlog_counts_runnable_jobs_by_version(queue: SqliteJobQueue) -> None:
    for _ in range(3):
        queue.submit(new_job("a"), now=0.0)
    queue.submit(new_job("b", 2), now=0.0)
    lease1(queue, "w", now=1.0, visibility_s=30, exclude={("b", 2)})
    assert queue.backlog() == {("a", 1): 2, ("b", 2): 1}


def test_deliveries_are_scheduled_with_the_result_and_retried(queue: SqliteJobQueue) -> None:
    job, _ = queue.submit(new_job(webhook="http://127.0.0.1:9/hook", output_uri="/o/x"), now=0.0)
    assert queue.due_deliveries(now=1.0, limit=10, lease_s=60) == []
    lease = lease1(queue, "w", now=1.0, visibility_s=30, exclude=set())
    assert lease is not None
    queue.complete(job.id, lease.token, b"r", now=2.0)
    due = queue.due_deliveries(now=2.0, limit=10, lease_s=60)
    assert sorted(d.kind for d in due) == ["output", "webhook"]
    # Taken deliveries are not handed out twice while they run.
    assert queue.due_deliveries(now=3.0, limit=10, lease_s=60) == []
    hook = next(d for d in due if d.kind == "webhook")
    queue.delivery_done(hook.id, now=3.0, error="HTTP 500", retry_at=4.0)
    queue.delivery_done(
        next(d for d in due if d.kind == "output").id, 3.0, error=None, retry_at=None
    )
    [again] = queue.due_deliveries(now=4.0, limit=10, lease_s=60)
    assert (again.kind, again.attempts, again.last_error) == ("webhook", 1, "HTTP 500")
    found = queue.get(job.id)
    assert found is not None
    assert {d.kind: d.status for d in found.deliveries} == {
        "webhook": "pending",
        "output": "delivered",
    }


def test_trigger_files_are_taken_once_even_after_the_result_expires(
    queue: SqliteJobQueue,
) -> None:
    queue.add_trigger(Trigger("t", "default", "m", None, "/in", "*.json", None, 0.0))
    with pytest.raises(JobStateError):
        queue.add_trigger(Trigger("t", "default", "m", None, "/in", "*.json", None, 0.0))
    source = TriggerFile("t", "/in/a.json", "c" * 64)
    job, created = queue.submit(new_job(source=source, result_ttl_s=1.0), now=0.0)
    assert created
    assert queue.trigger_file_seen(source)
    assert queue.submit(new_job(source=source), now=0.5) == (job, False)
    lease = lease1(queue, "w", now=1.0, visibility_s=30, exclude=set())
    assert lease is not None
    queue.complete(job.id, lease.token, b"r", now=1.0)
    queue.purge(now=5.0)
    assert queue.trigger_file_seen(source)  # remembered after the job is gone
    changed = TriggerFile("t", "/in/a.json", "d" * 64)  # new content: a new job
    assert not queue.trigger_file_seen(changed)


def test_backoff_is_full_jitter_capped() -> None:
    assert backoff_s(1, 1.0, 60.0, 0.999) == pytest.approx(0.999)
    assert backoff_s(3, 1.0, 60.0, 0.5) == pytest.approx(2.0)
    assert backoff_s(30, 1.0, 60.0, 0.5) == pytest.approx(30.0)
    assert backoff_s(5, 1.0, 60.0, 0.0) == 0.0
    assert next_attempt_at(3, 3, 100.0, 1.0, 60.0, 0.5) is None
    assert next_attempt_at(2, 3, 100.0, 1.0, 60.0, 0.5) == pytest.approx(101.0)
