"""The job runner: leases jobs from the queue and runs them on the version's pool.

Jobs go through the same pools as synchronous requests (batching, autoscaling, crash
retry). The runner keeps at most a version's capacity (instances × concurrency × batch size)
of its jobs in flight, so they never wait out the pool's queue timeout, and tells the
platform how many instances the backlog needs (the queue-depth policy), zero once it is
empty. Leases are renewed by a heartbeat; a stop hands running jobs back unfinished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable

from zeroserve.gateway import codec_v2
from zeroserve.jobs.queue import Job, JobQueue, Lease
from zeroserve.jobs.retry import next_attempt_at
from zeroserve.metering.audit_trail import Actor
from zeroserve.platform import NotFound, Platform
from zeroserve.scaling.autoscaler import desired_for_backlog
from zeroserve.tensors import TensorError

__all__ = ["JobRunner"]

log = logging.getLogger("zeroserve.jobs")

_POLL_S = 0.25  # how often the queue is looked at when nothing woke the runner
_LEASE_BATCH = 32  # jobs leased in one transaction (one fsync)
_HOUSEKEEPING_S = 1.0
_PURGE_EVERY_S = 60.0
_THROUGHPUT_WINDOW_S = 30.0
# Errors that no retry can fix: the version is gone, the stored request cannot be decoded.
_PERMANENT = (NotFound, TensorError)

VersionKey = tuple[str, int]


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class JobRunner:
    def __init__(
        self, platform: Platform, queue: JobQueue, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.platform = platform
        self.queue = queue
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        settings = platform.settings
        self._visibility_s = settings.job_visibility_s
        self._max_in_flight = settings.job_max_in_flight
        self._wake = asyncio.Event()
        self._running: dict[str, tuple[Lease, asyncio.Task[None]]] = {}
        self._per_version: Counter[VersionKey] = Counter()
        self._finished: dict[VersionKey, deque[float]] = {}
        self._floors: set[VersionKey] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.on_finished: Callable[[], None] = lambda: None

    async def start(self) -> None:
        orphans = await asyncio.to_thread(self.queue.reclaim, self.clock(), not_owner=self.owner)
        if orphans:
            log.warning(
                "%d jobs were running when the platform stopped; queued again", len(orphans)
            )
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._dispatch_loop()),
            loop.create_task(self._heartbeat_loop()),
            loop.create_task(self._housekeeping_loop()),
        ]

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        for task in self._loops:
            task.cancel()
        running = list(self._running.values())
        for _, task in running:
            task.cancel()
        await asyncio.gather(*self._loops, *(t for _, t in running), return_exceptions=True)
        now = self.clock()
        for lease, _ in running:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.queue.release, lease.job.id, lease.token, now)

    # -- dispatch ----------------------------------------------------------------------------

    def _capacity(self, key: VersionKey) -> int:
        try:
            spec = self.platform.version(*key)
        except NotFound:
            return 1  # runs once more and fails for good
        s = spec.scaling
        return s.max_instances * s.concurrency * spec.batching.max_batch_size

    async def _dispatch_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._fill()
            except Exception:  # the queue failing (disk full) must not stop the runner
                log.exception("leasing jobs failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _POLL_S)

    async def _fill(self) -> None:
        while (free := self._max_in_flight - len(self._running)) > 0:
            full = {k for k, n in self._per_version.items() if n >= self._capacity(k)}

            def room(key: VersionKey) -> int:
                return self._capacity(key) - self._per_version[key]

            leases = await asyncio.to_thread(
                self.queue.lease,
                self.owner,
                self.clock(),
                self._visibility_s,
                full,
                room,
                min(free, _LEASE_BATCH),
            )
            for lease in leases:
                self._start(lease)
            if len(leases) < min(free, _LEASE_BATCH):
                return

    def _start(self, lease: Lease) -> None:
        job = lease.job
        self._per_version[(job.model, job.version)] += 1
        task = asyncio.get_running_loop().create_task(self._run(lease))
        self._running[job.id] = (lease, task)
        if job.attempts == 1 and job.started_at is not None:
            self.platform.metrics.job_queue_seconds.labels(job.model).observe(
                max(0.0, job.started_at - job.created_at)
            )

    async def _run(self, lease: Lease) -> None:
        job = lease.job
        key = (job.model, job.version)
        started = time.perf_counter()
        try:
            try:
                result = await self._execute(lease)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._audit(job, 500, started, b"")
                await self._failed(lease, exc)
                return
            self._audit(job, 200, started, result)
            stored = await asyncio.to_thread(
                self.queue.complete, job.id, lease.token, result, self.clock()
            )
            if stored:
                self.platform.metrics.jobs.labels(job.model, "succeeded").inc()
                self._note_finished(key)
                if job.webhook or job.output_uri:
                    self.on_finished()
            else:  # its lease was taken from it (expired): another attempt owns the job
                log.warning("job %s finished after losing its lease; result dropped", job.id)
        finally:
            self._running.pop(job.id, None)
            self._per_version[key] -= 1
            self._wake.set()

    def _audit(self, job: Job, status: int, started: float, output: bytes) -> None:
        """Each attempt is an invocation in the audit log, as a synchronous request is
        (status 200, or 500 for a failed attempt), under the key that submitted the job."""
        self.platform.audit.invocation(
            Actor(job.tenant, job.submitted_by or "local"),
            model=job.model,
            version=str(job.version),
            status=status,
            latency_ms=(time.perf_counter() - started) * 1e3,
            input_data=job.body,
            output_data=output,
        )

    async def _execute(self, lease: Lease) -> bytes:
        job = lease.job
        spec = self.platform.version(job.model, job.version)
        header = str(job.header_length) if job.header_length is not None else None
        req = codec_v2.decode_request(job.body, header)
        # A job's result is read back as JSON: binary output flags do not apply.
        req.binary_output = False
        req.outputs = [codec_v2.RequestedOutput(o.name, False) for o in req.outputs]
        # A Python model may ask for the batch's requests: the job's key is the same on every
        # attempt, so a model with side effects can make them happen once.
        context = {
            "job_id": job.id,
            "idempotency_key": job.idempotency_key or job.id,
            "attempt": job.attempts,
        }
        result = await self.platform.infer(spec, req.inputs, context=context)
        payload, _ = codec_v2.encode_response(spec.model, spec.version, req, result.outputs)
        return payload

    async def _failed(self, lease: Lease, exc: Exception) -> None:
        job = lease.job
        now = self.clock()
        retry_at = None
        if not isinstance(exc, _PERMANENT):
            retry_at = next_attempt_at(
                job.attempts,
                job.max_attempts,
                now,
                job.backoff_base_s,
                job.backoff_max_s,
                random.random(),
            )
        error = describe(exc)
        status = await asyncio.to_thread(self.queue.fail, job.id, lease.token, error, now, retry_at)
        if status is not None:
            event = "retried" if status == "failed" else "dead"
            self.platform.metrics.jobs.labels(job.model, event).inc()
            if status == "dead" and (job.webhook or job.output_uri):
                self.on_finished()
            log.info("job %s attempt %d failed (%s): %s", job.id, job.attempts, event, error)

    # -- leases, backlog, expiry -------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._visibility_s / 3)
            if not self._running:
                continue
            try:
                until = self.clock() + self._visibility_s
                await asyncio.to_thread(self.queue.extend, self.owner, until)
            except Exception:
                log.exception("renewing job leases failed")

    async def _housekeeping_loop(self) -> None:
        last_purge = 0.0
        while True:
            await asyncio.sleep(_HOUSEKEEPING_S)
            try:
                now = self.clock()
                await asyncio.to_thread(self.queue.reclaim, now)
                self._scale_for_backlog(await asyncio.to_thread(self.queue.backlog))
                if now - last_purge >= _PURGE_EVERY_S:
                    last_purge = now
                    await asyncio.to_thread(self.queue.purge, now)
            except Exception:
                log.exception("job housekeeping failed")

    def _note_finished(self, key: VersionKey) -> None:
        done = self._finished.setdefault(key, deque())
        done.append(time.monotonic())
        self._trim(done)

    @staticmethod
    def _trim(done: deque[float]) -> None:
        horizon = time.monotonic() - _THROUGHPUT_WINDOW_S
        while done and done[0] < horizon:
            done.popleft()

    def _throughput_per_instance(self, key: VersionKey) -> float:
        done = self._finished.get(key)
        if not done:
            return 0.0
        self._trim(done)
        instances = max(1, self.platform.version_instances(*key))
        return len(done) / _THROUGHPUT_WINDOW_S / instances

    def _scale_for_backlog(self, backlog: dict[VersionKey, int]) -> None:
        gauge = self.platform.metrics.job_backlog
        for key in self._floors - backlog.keys():
            self.platform.set_backlog_floor(*key, 0)
            gauge.labels(key[0], str(key[1])).set(0)
        for key, queued in backlog.items():
            try:
                spec = self.platform.version(*key)
            except NotFound:
                continue
            waiting = queued + self._per_version[key]
            wanted = desired_for_backlog(waiting, self._throughput_per_instance(key), spec.scaling)
            self.platform.set_backlog_floor(*key, wanted)
            gauge.labels(key[0], str(key[1])).set(queued)
        self._floors = set(backlog)
