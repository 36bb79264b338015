"""Rate limits and quotas set for tenants and keys, kept in SQLite so a restart keeps them.

The counters themselves (token buckets, the day's count) live in the gateway's memory
(`ratelimit.RateLimiter`): a restart refills the buckets and forgets the day's count.
"""

from __future__ import annotations

import threading
from pathlib import Path

from zeroserve.security._db import open_db
from zeroserve.security.ratelimit import Limits, Scope

__all__ = ["LimitStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS limits (
    scope       TEXT NOT NULL,      -- tenant | key
    name        TEXT NOT NULL,      -- tenant name or key prefix
    rate_per_s  REAL,
    burst       INTEGER,
    daily_quota INTEGER,
    PRIMARY KEY (scope, name)
);
"""


class LimitStore:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = open_db(path, _SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def set(self, scope: Scope, name: str, limits: Limits | None) -> None:
        """Store the limits of one tenant or key; None removes them (back to the default)."""
        with self._lock:
            if limits is None:
                self._db.execute("DELETE FROM limits WHERE scope = ? AND name = ?", (scope, name))
                return
            self._db.execute(
                "INSERT OR REPLACE INTO limits VALUES (?, ?, ?, ?, ?)",
                (scope, name, limits.rate_per_s, limits.burst, limits.daily_quota),
            )

    def all(self) -> dict[tuple[Scope, str], Limits]:
        with self._lock:
            rows = self._db.execute(
                "SELECT scope, name, rate_per_s, burst, daily_quota FROM limits"
            ).fetchall()
        return {(r[0], r[1]): Limits(r[2], r[3], r[4]) for r in rows}
