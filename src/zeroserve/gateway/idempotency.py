"""`Idempotency-Key` on synchronous inference: a retried request gets the first response.

The first successful (2xx) response to a key is kept for 24 hours in SQLite (it survives a
restart) with a digest of the request; a retry with the same key and request gets it back,
marked `Idempotent-Replayed: true`, without running the model again. A retry that arrives
while the first is still running waits for it. A key reused with a different request is a
422. Errors are not kept: a retry after a 429 or 503 runs again, as it should.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from zeroserve.gateway.errors import ApiError

__all__ = ["IDEMPOTENCY_HEADER", "Idempotency", "idempotency_key", "request_digest"]

IDEMPOTENCY_HEADER = "idempotency-key"
_TTL_S = 24 * 3600.0
_PURGE_EVERY_S = 60.0
# Response headers worth replaying (content-length is recomputed).
_KEPT = ("content-type", "inference-header-content-length", "x-zeroserve-batch-size")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    tenant     TEXT NOT NULL,
    key        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    status     INTEGER NOT NULL,
    headers    TEXT NOT NULL,
    body       BLOB NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires_at);
"""


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise ApiError(400, "Idempotency-Key must be 1 to 255 printable characters")
    return key


def request_digest(request: Request, body: bytes) -> str:
    h = hashlib.sha256(request.url.path.encode() + b"\0")
    h.update((request.headers.get("inference-header-content-length") or "").encode() + b"\0")
    h.update(body)
    return h.hexdigest()


class _Stored:
    def __init__(self, digest: str, status: int, headers: dict[str, str], body: bytes) -> None:
        self.digest, self.status, self.headers, self.body = digest, status, headers, body

    def response(self) -> Response:
        headers = {**self.headers, "idempotent-replayed": "true"}
        return Response(self.body, status_code=self.status, headers=headers)


class Idempotency:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._running: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._last_purge = 0.0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _get(self, tenant: str, key: str) -> _Stored | None:
        with self._lock:
            row = self._db.execute(
                "SELECT digest, status, headers, body FROM responses"
                " WHERE tenant = ? AND key = ? AND expires_at > ?",
                (tenant, key, self.clock()),
            ).fetchone()
        if row is None:
            return None
        return _Stored(row[0], int(row[1]), json.loads(row[2]), bytes(row[3]))

    def _put(self, tenant: str, key: str, stored: _Stored) -> None:
        now = self.clock()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    tenant, key, stored.digest, stored.status, json.dumps(stored.headers),
                    stored.body, now + _TTL_S,
                ),
            )  # fmt: skip
            if now - self._last_purge > _PURGE_EVERY_S:
                self._last_purge = now
                self._db.execute("DELETE FROM responses WHERE expires_at <= ?", (now,))

    async def run(
        self, tenant: str, key: str, digest: str, compute: Callable[[], Awaitable[Response]]
    ) -> Response:
        while True:
            stored = await asyncio.to_thread(self._get, tenant, key)
            if stored is not None:
                if stored.digest != digest:
                    raise ApiError(
                        422, f"Idempotency-Key {key!r} was used with a different request"
                    )
                return stored.response()
            running = self._running.get((tenant, key))
            if running is None:
                break
            await asyncio.shield(running)  # then replay its response, or run if it failed
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[(tenant, key)] = done
        try:
            response = await compute()
            if 200 <= response.status_code < 300:
                headers = {k: v for k, v in response.headers.items() if k in _KEPT}
                stored = _Stored(digest, response.status_code, headers, bytes(response.body))
                await asyncio.to_thread(self._put, tenant, key, stored)
            return response
        finally:
            del self._running[(tenant, key)]
            done.set_result(None)
