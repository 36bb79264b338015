"""Which tenants may use an artifact: those that uploaded (or fetched) its bytes.

The store is content-addressed and shared, so without this a key that learned another
tenant's digest could deploy that tenant's model. Having the bytes proves the right to them:
uploading the same content makes a tenant an owner too. Digests stored before owners were
recorded have none, and stay usable by anyone (recorded on first use)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

__all__ = ["ArtifactOwners"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS owners (
    sha256 TEXT NOT NULL,
    tenant TEXT NOT NULL,
    PRIMARY KEY (sha256, tenant)
);
"""


class ArtifactOwners:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, digest: str, tenant: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO owners VALUES (?, ?)", (digest, tenant))

    def may_use(self, digest: str, tenant: str) -> bool:
        with self._lock:
            rows = self._db.execute(
                "SELECT tenant FROM owners WHERE sha256 = ?", (digest,)
            ).fetchall()
        return not rows or any(r[0] == tenant for r in rows)
