"""Jobs as the gateway, the triggers and the CLI see them: validated submission over a queue,
and the runner that executes them.

A request is validated when it is submitted (decoded, checked against the version's
signature), so a malformed one gets its 400 at once instead of becoming a dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from zeroserve.gateway import codec_v2
from zeroserve.jobs.deliveries import Deliverer, output_path
from zeroserve.jobs.queue import Job, JobInputError, JobQueue, NewJob, Trigger, TriggerFile
from zeroserve.jobs.runner import JobRunner
from zeroserve.jobs.triggers import TriggerWatcher
from zeroserve.platform import Platform
from zeroserve.security.tenants import DEFAULT_TENANT
from zeroserve.spec import VersionSpec
from zeroserve.tensors import TensorError

__all__ = ["JobService", "Submission", "webhook_secret"]

log = logging.getLogger("zeroserve.jobs")

_MAX_PRIORITY = 1000


@dataclass(frozen=True)
class Submission:
    """A V2 inference request body, plus what makes it a job."""

    body: bytes
    header_length: int | None
    # The version in the URL (None: routed by traffic): with the body, what a repeated
    # Idempotency-Key is compared with, so a retry may land on another version's split.
    requested_version: int | None = None
    idempotency_key: str | None = None
    tenant: str = DEFAULT_TENANT
    source: TriggerFile | None = None
    output_uri: str | None = None
    submitted_by: str | None = None


def _job_fields(header: bytes | memoryview) -> tuple[str | None, int]:
    """`webhook` and `priority` from the request's JSON (the V2 decoder ignores them)."""
    try:
        doc = orjson.loads(header)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TensorError(f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise TensorError("the request body must be a JSON object with 'inputs'")
    webhook, priority = doc.get("webhook"), doc.get("priority", 0)
    if webhook is not None:
        parts = urlsplit(webhook) if isinstance(webhook, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise JobInputError(f"webhook {webhook!r} must be an http:// or https:// URL")
    if (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not -_MAX_PRIORITY <= priority <= _MAX_PRIORITY
    ):
        raise JobInputError(
            f"priority {priority!r} must be an integer in [-{_MAX_PRIORITY}, {_MAX_PRIORITY}]"
        )
    return webhook, priority


def webhook_secret(configured: str, state_dir: Path) -> bytes:
    """The configured secret, or one generated once and kept (0600) in the state dir."""
    if configured:
        return configured.encode()
    path = state_dir / "webhook-secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip().encode()


class JobService:
    def __init__(self, platform: Platform, queue: JobQueue) -> None:
        settings = platform.settings
        self.platform = platform
        self.queue = queue
        self.runner = JobRunner(platform, queue)
        self.deliverer = Deliverer(
            queue,
            platform.metrics,
            secret=webhook_secret(settings.webhook_secret, settings.state_dir),
            max_attempts=settings.webhook_max_attempts,
            backoff_s=settings.delivery_backoff_s,
        )
        self.runner.on_finished = self.deliverer.wake  # its webhook is due now
        self.watcher = TriggerWatcher(
            queue,
            self._submit_file,
            poll_s=settings.trigger_poll_s,
            max_bytes=settings.max_body_bytes,
        )
        self._lock_fd: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._lock_state_dir()
        await self.runner.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.deliverer.run()),
            loop.create_task(self.watcher.run()),
        ]

    def _lock_state_dir(self) -> None:
        # Reclaiming a predecessor's leases at start is safe only if no other platform is
        # running jobs from this queue now.
        path = self.platform.settings.state_dir / "jobs.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(
                f"another zeroserve platform is running with the state dir"
                f" {self.platform.settings.state_dir}"
            ) from None
        self._lock_fd = fd

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.runner.close()
        self.queue.close()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)

    async def _submit_file(self, trigger: Trigger, source: TriggerFile, data: bytes) -> None:
        spec = self.platform.route(trigger.model, trigger.version)
        output = output_path(trigger.output, source.path) if trigger.output else None
        sub = Submission(
            body=data,
            header_length=None,
            requested_version=trigger.version,
            tenant=trigger.tenant,
            source=source,
            output_uri=output,
        )
        job, created = await self.submit(spec, sub)
        if created:
            log.info("trigger %s: %s -> job %s", trigger.name, source.path, job.id)

    def prepare(self, spec: VersionSpec, sub: Submission) -> NewJob:
        """Validate a submission for `spec`: TensorError (400) or JobInputError (422)."""
        cut = sub.header_length if sub.header_length is not None else len(sub.body)
        if not 0 <= cut <= len(sub.body):
            raise TensorError(f"inference header length {cut} exceeds the body")
        webhook, priority = _job_fields(memoryview(sub.body)[:cut])
        req = codec_v2.decode_request(
            sub.body, str(sub.header_length) if sub.header_length is not None else None
        )
        codec_v2.validate(req.inputs, spec.signature)
        codec_v2.check_requested_outputs(req.outputs, spec.signature)
        policy = spec.jobs
        return NewJob(
            tenant=sub.tenant,
            model=spec.model,
            version=spec.version,
            body=sub.body,
            header_length=sub.header_length,
            request_sha256=_request_hash(spec, sub),
            max_attempts=policy.max_attempts,
            backoff_base_s=policy.backoff_base_s,
            backoff_max_s=policy.backoff_max_s,
            result_ttl_s=policy.result_ttl_s,
            priority=priority,
            idempotency_key=sub.idempotency_key,
            webhook=webhook,
            output_uri=sub.output_uri,
            source=sub.source,
            submitted_by=sub.submitted_by,
        )

    async def submit(self, spec: VersionSpec, sub: Submission) -> tuple[Job, bool]:
        """Commit the job (acknowledged only once durable); (job, False) for a repeat."""
        new = self.prepare(spec, sub)
        job, created = await asyncio.to_thread(self.queue.submit, new, time.time())
        if created:
            self.platform.metrics.jobs.labels(spec.model, "submitted").inc()
            self.runner.wake()
        return job, created

    async def get(self, job_id: str) -> Job | None:
        return await asyncio.to_thread(self.queue.get, job_id)

    async def cancel(self, job_id: str) -> Job | None:
        job = await asyncio.to_thread(self.queue.cancel, job_id, time.time())
        if job is not None:
            self.platform.metrics.jobs.labels(job.model, "cancelled").inc()
        return job

    async def requeue(self, job_id: str) -> Job | None:
        job = await asyncio.to_thread(self.queue.requeue_dead, job_id, time.time())
        if job is not None:
            self.runner.wake()
        return job

    async def delete_dead(self, job_id: str) -> bool:
        return await asyncio.to_thread(self.queue.delete_dead, job_id)

    async def list_jobs(self, **filters: Any) -> tuple[list[Job], int | None]:
        return await asyncio.to_thread(lambda: self.queue.list_jobs(**filters))

    async def add_trigger(self, trigger: Trigger) -> None:
        await asyncio.to_thread(self.queue.add_trigger, trigger)

    async def triggers(self, tenant: str | None = None) -> list[Trigger]:
        return await asyncio.to_thread(self.queue.triggers, tenant)

    async def remove_trigger(self, name: str) -> bool:
        return await asyncio.to_thread(self.queue.remove_trigger, name)


def _request_hash(spec: VersionSpec, sub: Submission) -> str:
    h = hashlib.sha256()
    h.update(f"{spec.model}\0{sub.requested_version}\0{sub.header_length}\0".encode())
    h.update(sub.body)
    return h.hexdigest()
