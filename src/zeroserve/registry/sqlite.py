"""Registry in SQLite (stdlib): the embedded default.

Versions are rows that are never updated (a trigger refuses it); traffic is a column of the
model row that points at versions.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from zeroserve.registry.base import ModelRecord, RegistryError
from zeroserve.spec import TrafficSplit, VersionSpec

__all__ = ["SqliteRegistry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name       TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    traffic    TEXT NOT NULL            -- JSON list of {version, percent}
);
CREATE TABLE IF NOT EXISTS versions (
    model      TEXT NOT NULL REFERENCES models(name) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    spec       TEXT NOT NULL,           -- VersionSpec as JSON
    created_at REAL NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TRIGGER IF NOT EXISTS versions_are_immutable BEFORE UPDATE ON versions
BEGIN
    SELECT RAISE(ABORT, 'versions are immutable: deploy a new version instead');
END;
"""


class SqliteRegistry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection guarded by a lock: the gateway is one event loop, the CLI one thread.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def next_version(self, model: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM versions WHERE model = ?", (model,)
            ).fetchone()
        return int(row[0]) + 1

    def add_version(self, spec: VersionSpec, *, route_all_traffic: bool = True) -> VersionSpec:
        traffic = json.dumps([{"version": spec.version, "percent": 100}])
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT OR IGNORE INTO models (name, created_at, traffic) VALUES (?, ?, ?)",
                    (spec.model, time.time(), traffic),
                )
                self._db.execute(
                    "INSERT INTO versions (model, version, spec, created_at) VALUES (?, ?, ?, ?)",
                    (spec.model, spec.version, spec.model_dump_json(), spec.created_at),
                )
                if route_all_traffic:
                    self._db.execute(
                        "UPDATE models SET traffic = ? WHERE name = ?", (traffic, spec.model)
                    )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self._db.execute("ROLLBACK")
                raise RegistryError(
                    f"version {spec.version} of {spec.model!r} already exists"
                ) from exc
        return spec

    def get(self, model: str) -> ModelRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT name, created_at, traffic FROM models WHERE name = ?", (model,)
            ).fetchone()
            if row is None:
                return None
            specs = self._db.execute(
                "SELECT spec FROM versions WHERE model = ? ORDER BY version", (model,)
            ).fetchall()
        return _record(row, specs)

    def list_models(self) -> list[ModelRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, created_at, traffic FROM models ORDER BY name"
            ).fetchall()
            out = []
            for row in rows:
                specs = self._db.execute(
                    "SELECT spec FROM versions WHERE model = ? ORDER BY version", (row[0],)
                ).fetchall()
                out.append(_record(row, specs))
        return out

    def set_traffic(self, model: str, traffic: list[TrafficSplit]) -> ModelRecord:
        record = self.get(model)
        if record is None:
            raise RegistryError(f"model {model!r} not found")
        known = {v.version for v in record.versions}
        unknown = sorted({t.version for t in traffic} - known)
        if unknown:
            raise RegistryError(f"model {model!r} has no version(s) {unknown}")
        if sum(t.percent for t in traffic) != 100:
            raise RegistryError("traffic percentages must add up to 100")
        payload = json.dumps([t.model_dump() for t in traffic])
        with self._lock:
            self._db.execute("UPDATE models SET traffic = ? WHERE name = ?", (payload, model))
        updated = self.get(model)
        assert updated is not None
        return updated

    def delete(self, model: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM models WHERE name = ?", (model,))
        return cur.rowcount > 0


def _record(row: tuple[str, float, str], specs: list[tuple[str]]) -> ModelRecord:
    return ModelRecord(
        name=row[0],
        created_at=row[1],
        traffic=tuple(TrafficSplit(**t) for t in json.loads(row[2])),
        versions=tuple(VersionSpec.model_validate_json(s[0]) for s in specs),
    )
