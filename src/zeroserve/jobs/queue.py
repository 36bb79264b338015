"""The job queue's vocabulary and the interface a durable store fills (SQLite here; Redis in
cluster mode).

Delivery is at least once: a worker *leases* a job for a visibility timeout and renews the
lease while it runs; a job whose lease runs out (its worker or the whole platform died) is
queued again. Every lease carries a fencing token, so an attempt that lost its lease cannot
record a result: each job's result is recorded exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "STATUSES",
    "Delivery",
    "IdempotencyConflict",
    "Job",
    "JobInputError",
    "JobQueue",
    "JobStateError",
    "Lease",
    "NewJob",
    "Status",
    "Trigger",
    "TriggerFile",
]

Status = Literal["queued", "running", "succeeded", "failed", "dead", "cancelled"]
# "failed" is a job between attempts (an attempt failed, the next one is scheduled).
STATUSES: tuple[Status, ...] = ("queued", "running", "succeeded", "failed", "dead", "cancelled")
FINISHED: tuple[Status, ...] = ("succeeded", "dead", "cancelled")


class IdempotencyConflict(Exception):
    """An Idempotency-Key was reused with a different request."""


class JobInputError(Exception):
    """A job field other than the tensors is invalid (webhook, priority): 422."""


class JobStateError(Exception):
    """The job is not in a state that allows the operation (e.g. cancelling a running job)."""


@dataclass(frozen=True)
class TriggerFile:
    """The file a trigger turned into a job: recorded with the job, so each is taken once."""

    trigger: str
    path: str
    sha256: str


@dataclass(frozen=True)
class NewJob:
    tenant: str
    model: str
    version: int
    body: bytes  # the V2 inference request as received (JSON, or JSON header + binary)
    header_length: int | None
    request_sha256: str  # what an Idempotency-Key is compared with
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    result_ttl_s: float
    priority: int = 0
    idempotency_key: str | None = None
    webhook: str | None = None
    output_uri: str | None = None  # where a trigger's result file goes
    source: TriggerFile | None = None
    submitted_by: str | None = None  # the key prefix (an invoker reads only its own jobs)


@dataclass(frozen=True)
class Job:
    id: str
    tenant: str
    model: str
    version: int
    status: Status
    priority: int
    body: bytes
    header_length: int | None
    attempts: int
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    created_at: float
    run_after: float
    started_at: float | None
    finished_at: float | None
    expires_at: float | None
    idempotency_key: str | None
    webhook: str | None
    output_uri: str | None
    source: str | None
    result: bytes | None  # the V2 inference response (JSON)
    error: str | None  # the last attempt's error
    submitted_by: str | None
    errors: list[dict[str, Any]] = field(default_factory=list)  # every failed attempt
    deliveries: list[Delivery] = field(default_factory=list)


@dataclass(frozen=True)
class Lease:
    job: Job
    token: int  # fencing token: complete/fail/extend succeed only with the current one


@dataclass(frozen=True)
class Delivery:
    """Something to do once a job has finished: POST a webhook, write an output file."""

    id: int
    job_id: str
    kind: Literal["webhook", "output"]
    target: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_at: float
    last_error: str | None
    delivered_at: float | None


@dataclass(frozen=True)
class Trigger:
    name: str
    tenant: str
    model: str
    version: int | None  # None: routed by the model's traffic split at each file
    watch: str  # a folder path or fsspec URI
    pattern: str  # fnmatch on the file name
    output: str | None
    created_at: float


class JobQueue(Protocol):
    """A durable job queue. Every method is one atomic transaction."""

    def submit(self, new: NewJob, now: float) -> tuple[Job, bool]:
        """Commit a job (True), or return the job already submitted with the same
        idempotency key or trigger file (False). IdempotencyConflict if the key was used
        with a different request."""
        ...

    def get(self, job_id: str) -> Job | None: ...

    def list_jobs(
        self,
        *,
        tenant: str | None = None,
        model: str | None = None,
        status: str | None = None,
        submitted_by: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> tuple[list[Job], int | None]:
        """Newest first; the cursor to pass as `before` for the next page, or None."""
        ...

    def lease(
        self,
        owner: str,
        now: float,
        visibility_s: float,
        exclude: set[tuple[str, int]],
        room: Callable[[tuple[str, int]], int] = ...,
        limit: int = 1,
    ) -> list[Lease]:
        """Up to `limit` runnable jobs (highest priority, then oldest) in one transaction:
        none of an `exclude`d version, at most `room(version)` of any other."""
        ...

    def extend(self, owner: str, until: float) -> int:
        """Renew every lease `owner` holds (its heartbeat); how many it holds."""
        ...

    def release(self, job_id: str, token: int, now: float) -> bool:
        """Give a running job back unfinished (a graceful stop): queued again, the attempt
        not counted."""
        ...

    def complete(self, job_id: str, token: int, result: bytes, now: float) -> bool: ...

    def fail(
        self, job_id: str, token: int, error: str, now: float, retry_at: float | None
    ) -> Status | None:
        """Record a failed attempt: the job waits for `retry_at`, or (None) goes dead.
        None when the lease was lost meanwhile."""
        ...

    def reclaim(self, now: float, *, not_owner: str | None = None) -> list[Job]:
        """Queue again (or kill, at max attempts) running jobs whose lease ran out, or with
        `not_owner` every running job some other owner holds (a previous platform's)."""
        ...

    def cancel(self, job_id: str, now: float) -> Job | None: ...

    def requeue_dead(self, job_id: str, now: float) -> Job | None: ...

    def delete_dead(self, job_id: str) -> bool: ...

    def backlog(self) -> dict[tuple[str, int], int]:
        """Queued (runnable now or later) jobs by model and version."""
        ...

    def purge(self, now: float) -> int:
        """Delete finished jobs past their result TTL; dead letters stay until handled."""
        ...

    def due_deliveries(self, now: float, limit: int, lease_s: float) -> list[Delivery]: ...

    def delivery_done(
        self, delivery_id: int, now: float, *, error: str | None, retry_at: float | None
    ) -> None: ...

    def add_trigger(self, trigger: Trigger) -> None: ...

    def triggers(self, tenant: str | None = None) -> list[Trigger]: ...

    def remove_trigger(self, name: str) -> bool: ...

    def trigger_file_seen(self, source: TriggerFile) -> bool: ...

    def close(self) -> None: ...
