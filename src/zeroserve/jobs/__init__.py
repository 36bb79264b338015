"""Asynchronous jobs: a durable queue, retries, dead letters, webhooks and file triggers."""

from zeroserve.jobs.queue import (
    Delivery,
    IdempotencyConflict,
    Job,
    JobQueue,
    JobStateError,
    Lease,
    NewJob,
    Trigger,
)
from zeroserve.jobs.sqlite import SqliteJobQueue

__all__ = [
    "Delivery",
    "IdempotencyConflict",
    "Job",
    "JobQueue",
    "JobStateError",
    "Lease",
    "NewJob",
    "SqliteJobQueue",
    "Trigger",
]
