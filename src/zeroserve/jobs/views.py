"""How jobs, dead letters and triggers look in the API, the CLI and webhook bodies."""

from __future__ import annotations

from typing import Any

import orjson

from zeroserve.jobs.queue import Delivery, Job, Trigger

__all__ = ["job_view", "trigger_view"]


def _delivery_view(d: Delivery) -> dict[str, Any]:
    return {
        "kind": d.kind,
        "target": d.target,
        "status": d.status,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "delivered_at": d.delivered_at,
        "next_at": d.next_at if d.status == "pending" else None,
    }


def job_view(job: Job, *, result: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": job.id,
        "model": job.model,
        "version": job.version,
        "status": job.status,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "expires_at": job.expires_at,
        "next_attempt_at": job.run_after if job.status == "failed" else None,
        "idempotency_key": job.idempotency_key,
        "source": job.source,
        "error": job.error,
        "errors": job.errors,
        "webhook": job.webhook,
        "deliveries": [_delivery_view(d) for d in job.deliveries],
    }
    if result:
        view["result"] = orjson.loads(job.result) if job.result is not None else None
    return view


def trigger_view(t: Trigger) -> dict[str, Any]:
    return {
        "name": t.name,
        "model": t.model,
        "version": t.version,
        "watch": t.watch,
        "pattern": t.pattern,
        "output": t.output,
        "created_at": t.created_at,
    }
