"""The platform's side of the audit log: who did what, written where it happens.

Administrative actions (deploy, traffic, delete, keys, secrets, trust) are appended at once;
they are rare and the caller waits for the commit. Invocations are many: they are queued in
memory and appended in batches, one transaction per batch, off the request path, so the log
costs the hot path a digest of the body and a dict. A crash can lose the last fraction of a
second of invocation records, never an administrative one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroserve.security.audit import AuditLog

__all__ = ["LOCAL", "Actor", "AuditTrail"]

log = logging.getLogger("zeroserve.audit")

_FLUSH_S = 0.2
_MAX_PENDING = 100_000  # past it, invocation records are dropped (counted, and logged)


@dataclass(frozen=True)
class Actor:
    """Who acts: the key's tenant and prefix, or 'local' when authentication is off."""

    tenant: str
    name: str


LOCAL = Actor("default", "local")


class AuditTrail:
    def __init__(self, path: Path) -> None:
        self.log = AuditLog(path)
        self._pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._flush)
        self.log.close()

    def record(
        self, actor: Actor, action: str, target: str = "", detail: dict[str, Any] | None = None
    ) -> None:
        """Append an administrative action now (the commit is on disk when this returns)."""
        self.log.append(
            tenant=actor.tenant,
            actor=actor.name,
            action=action,
            now=time.time(),
            target=target,
            detail=detail,
        )

    def invocation(
        self,
        actor: Actor,
        *,
        model: str,
        version: str,
        status: int,
        latency_ms: float,
        input_data: bytes,
        output_data: bytes,
    ) -> None:
        """Queue one invocation's record: digests and sizes of its data, never the data."""
        if len(self._pending) >= _MAX_PENDING:
            self.dropped += 1
            return
        detail = {
            "model": model,
            "version": version,
            "status": status,
            "latency_ms": round(latency_ms, 3),
            "input_sha256": hashlib.sha256(input_data).hexdigest(),
            "input_bytes": len(input_data),
            "output_sha256": hashlib.sha256(output_data).hexdigest(),
            "output_bytes": len(output_data),
        }
        self._pending.append(
            {
                "tenant": actor.tenant,
                "actor": actor.name,
                "action": "model.invoke",
                "now": time.time(),
                "target": model,
                "detail": detail,
            }
        )

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            self.log.append_many(batch)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(_FLUSH_S)
            try:
                if self._pending:
                    batch, self._pending = self._pending, []
                    await asyncio.to_thread(self.log.append_many, batch)
            except Exception:
                log.exception("writing invocation records to the audit log failed")
            if self.dropped:
                log.warning("%d invocation audit records dropped (queue full)", self.dropped)
                self.dropped = 0
