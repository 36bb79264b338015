"""What happens once a job has finished: its webhook is POSTed, a trigger's output file is
written. Each delivery is a row in the queue, so it survives a restart, and is retried
with backoff until it succeeds or its attempts are spent.

Webhook bodies are signed as Stripe signs its events: the header
`X-Zeroserve-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`; the
receiver recomputes it and rejects an old timestamp (replay).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import posixpath
import random
import time
from collections.abc import Callable

import fsspec
import httpx
import orjson

from zeroserve.jobs.queue import Delivery, Job, JobQueue
from zeroserve.jobs.retry import backoff_s
from zeroserve.jobs.views import job_view
from zeroserve.metering import Metrics

__all__ = [
    "SIGNATURE_HEADER",
    "Deliverer",
    "output_path",
    "post_webhook",
    "sign",
    "verify",
    "write_output",
]

SIGNATURE_HEADER = "X-Zeroserve-Signature"

log = logging.getLogger("zeroserve.jobs")

_BATCH = 16  # deliveries run concurrently
_POLL_S = 0.5
_DELIVERY_LEASE_S = 60.0  # a delivery taken but not finished (crash) is retried after this


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: bytes, header: str, body: bytes, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver does (and what the tests do): the signature matches, and is fresh."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (ValueError, KeyError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return abs(now - timestamp) <= tolerance_s and hmac.compare_digest(expected, given)


async def post_webhook(
    client: httpx.AsyncClient, delivery: Delivery, job: Job, secret: bytes
) -> str | None:
    """POST the finished job; None on a 2xx, else what went wrong."""
    body = orjson.dumps(job_view(job))
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(secret, int(time.time()), body),
        "X-Zeroserve-Job-Id": job.id,
        "X-Zeroserve-Delivery-Attempt": str(delivery.attempts + 1),
    }
    try:
        response = await client.post(delivery.target, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code} from {delivery.target}"


def output_path(output: str, source: str) -> str:
    """Where a trigger writes the result of `source`: `<output>/<file name>`; the suffix
    (.result.json or .error.json) is added when the job has finished."""
    return posixpath.join(output.rstrip("/"), posixpath.basename(source))


def write_output(delivery: Delivery, job: Job) -> str | None:
    """Write the result (or the error) next to the other outputs, atomically: a reader never
    sees half a file. None on success."""
    if job.status == "succeeded" and job.result is not None:
        target, payload = delivery.target + ".result.json", job.result
    else:
        view = job_view(job, result=False)
        target = delivery.target + ".error.json"
        payload = orjson.dumps({k: view[k] for k in ("id", "status", "error", "errors")})
    try:
        fs, path = fsspec.core.url_to_fs(target)
        partial = path + ".partial"
        fs.pipe_file(partial, payload)
        fs.mv(partial, path)
    except Exception as exc:  # any filesystem's error: recorded on the delivery, retried
        return f"writing {target}: {type(exc).__name__}: {exc}"
    return None


class Deliverer:
    """Runs due deliveries: a few at a time, each retried with backoff up to max_attempts."""

    def __init__(
        self,
        queue: JobQueue,
        metrics: Metrics,
        *,
        secret: bytes,
        max_attempts: int,
        backoff_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.metrics = metrics
        self.secret = secret
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.clock = clock
        self._wake = asyncio.Event()
        self._client: httpx.AsyncClient | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        # Webhook receivers get 10 s; redirects are not followed (the URL is the contract).
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
            self._client = client
            while True:
                self._wake.clear()
                try:
                    due = await asyncio.to_thread(
                        self.queue.due_deliveries, self.clock(), _BATCH, _DELIVERY_LEASE_S
                    )
                    await asyncio.gather(*(self._deliver(d) for d in due))
                except Exception:
                    log.exception("running deliveries failed")
                    due = []
                if len(due) < _BATCH:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), _POLL_S)

    async def _deliver(self, delivery: Delivery) -> None:
        job = await asyncio.to_thread(self.queue.get, delivery.job_id)
        if job is None:
            error: str | None = "the job no longer exists"
        elif delivery.kind == "webhook":
            assert self._client is not None
            error = await post_webhook(self._client, delivery, job, self.secret)
        else:
            error = await asyncio.to_thread(write_output, delivery, job)
        retry_at = None
        attempt = delivery.attempts + 1
        if error is not None and job is not None and attempt < self.max_attempts:
            retry_at = self.clock() + backoff_s(attempt, self.backoff_s, 300.0, random.random())
        result = "ok" if error is None else ("retry" if retry_at is not None else "failed")
        self.metrics.deliveries.labels(delivery.kind, result).inc()
        if error is not None:
            log.warning(
                "%s for job %s (attempt %d): %s", delivery.kind, delivery.job_id, attempt, error
            )
        await asyncio.to_thread(
            self.queue.delivery_done, delivery.id, self.clock(), error=error, retry_at=retry_at
        )
