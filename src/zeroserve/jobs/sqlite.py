"""The job queue in SQLite (stdlib), WAL mode: the embedded default.

A job is acknowledged (202) only after its row is committed; with `synchronous=FULL` the
commit is on disk, so neither `kill -9` nor a power cut loses an acknowledged job. One
platform uses a queue file at a time (the runner holds a lock on the state dir), which is
what lets a restarted platform reclaim its predecessor's leases at once.
"""

from __future__ import annotations

import collections
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zeroserve.jobs.queue import (
    Delivery,
    IdempotencyConflict,
    Job,
    JobStateError,
    Lease,
    NewJob,
    Status,
    Trigger,
    TriggerFile,
)

__all__ = ["SqliteJobQueue"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    tenant          TEXT NOT NULL,
    model           TEXT NOT NULL,
    version         INTEGER NOT NULL,
    status          TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    body            BLOB NOT NULL,
    header_length   INTEGER,
    request_sha256  TEXT NOT NULL,
    idempotency_key TEXT,
    webhook         TEXT,
    output_uri      TEXT,
    source          TEXT,
    submitted_by    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    backoff_base_s  REAL NOT NULL,
    backoff_max_s   REAL NOT NULL,
    result_ttl_s    REAL NOT NULL,
    run_after       REAL NOT NULL,
    lease_owner     TEXT,
    lease_token     INTEGER NOT NULL DEFAULT 0,
    lease_until     REAL,
    created_at      REAL NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    expires_at      REAL,
    result          BLOB,
    error           TEXT,
    errors          TEXT NOT NULL DEFAULT '[]'   -- JSON list of {attempt, at, error}
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency
    ON jobs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs (status, priority DESC, seq);
CREATE INDEX IF NOT EXISTS jobs_by_model ON jobs (model, status, seq);
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id       TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,          -- webhook | output
    target       TEXT NOT NULL,
    status       TEXT NOT NULL,          -- pending | delivered | failed
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL,
    last_error   TEXT,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
CREATE INDEX IF NOT EXISTS deliveries_by_job ON deliveries (job_id);
CREATE TABLE IF NOT EXISTS triggers (
    name       TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    model      TEXT NOT NULL,
    version    INTEGER,
    watch      TEXT NOT NULL,
    pattern    TEXT NOT NULL,
    output     TEXT,
    created_at REAL NOT NULL
);
-- Every file a trigger took, by path and content: kept after the job's result expires, so
-- a file is processed once, also across restarts.
CREATE TABLE IF NOT EXISTS trigger_files (
    trigger  TEXT NOT NULL,
    path     TEXT NOT NULL,
    sha256   TEXT NOT NULL,
    job_id   TEXT NOT NULL,
    seen_at  REAL NOT NULL,
    PRIMARY KEY (trigger, path, sha256)
);
"""

_RUNNABLE = "status IN ('queued', 'failed')"
_JOB_COLUMNS = (
    "id, tenant, model, version, status, priority, body, header_length, attempts, max_attempts,"
    " backoff_base_s, backoff_max_s, created_at, run_after, started_at, finished_at,"
    " expires_at, idempotency_key, webhook, output_uri, source, result, error, errors,"
    " submitted_by"
)


def _job(row: sqlite3.Row, deliveries: list[Delivery] | None = None) -> Job:
    values = dict(row)
    values.pop("seq", None)
    values["errors"] = json.loads(values["errors"])
    values["body"] = bytes(values["body"])
    if values["result"] is not None:
        values["result"] = bytes(values["result"])
    return Job(**values, deliveries=deliveries or [])


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(**dict(row))


def _with_error(errors_json: str, attempt: int, at: float, error: str) -> str:
    errors = json.loads(errors_json)
    errors.append({"attempt": attempt, "at": at, "error": error})
    return json.dumps(errors)


class SqliteJobQueue:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- jobs --------------------------------------------------------------------------------

    def submit(self, new: NewJob, now: float) -> tuple[Job, bool]:
        with self._tx() as db:
            existing = self._existing(db, new)
            if existing is not None:
                return existing, False
            job_id = uuid.uuid4().hex
            db.execute(
                "INSERT INTO jobs (id, tenant, model, version, status, priority, body,"
                " header_length, request_sha256, idempotency_key, webhook, output_uri, source,"
                " max_attempts, backoff_base_s, backoff_max_s, result_ttl_s, run_after,"
                " created_at, submitted_by) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id, new.tenant, new.model, new.version, new.priority, new.body,
                    new.header_length, new.request_sha256, new.idempotency_key, new.webhook,
                    new.output_uri, new.source.path if new.source else None, new.max_attempts,
                    new.backoff_base_s, new.backoff_max_s, new.result_ttl_s, now, now,
                    new.submitted_by,
                ),
            )  # fmt: skip
            if new.source is not None:
                db.execute(
                    "INSERT INTO trigger_files (trigger, path, sha256, job_id, seen_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (new.source.trigger, new.source.path, new.source.sha256, job_id, now),
                )
            job = self._get(db, job_id)
            assert job is not None
            return job, True

    def _existing(self, db: sqlite3.Connection, new: NewJob) -> Job | None:
        if new.source is not None:
            row = db.execute(
                "SELECT job_id FROM trigger_files WHERE trigger = ? AND path = ? AND sha256 = ?",
                (new.source.trigger, new.source.path, new.source.sha256),
            ).fetchone()
            if row is not None:
                job = self._get(db, row[0])
                if job is None:  # processed, and its result has expired since
                    raise JobStateError(f"{new.source.path} was processed as job {row[0]}")
                return job
        if new.idempotency_key is None:
            return None
        row = db.execute(
            "SELECT id, request_sha256 FROM jobs WHERE tenant = ? AND idempotency_key = ?",
            (new.tenant, new.idempotency_key),
        ).fetchone()
        if row is None:
            return None
        if row["request_sha256"] != new.request_sha256:
            raise IdempotencyConflict(
                f"Idempotency-Key {new.idempotency_key!r} was used for a different request"
                f" (job {row['id']})"
            )
        return self._get(db, row["id"])

    def _get(self, db: sqlite3.Connection, job_id: str) -> Job | None:
        row = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        deliveries = db.execute(
            "SELECT id, job_id, kind, target, status, attempts, next_at, last_error,"
            " delivered_at FROM deliveries WHERE job_id = ? ORDER BY id",
            (job_id,),
        ).fetchall()
        return _job(row, [_delivery(d) for d in deliveries])

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._get(self._db, job_id)

    def list_jobs(
        self,
        *,
        tenant: str | None = None,
        model: str | None = None,
        status: str | None = None,
        submitted_by: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> tuple[list[Job], int | None]:
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        filters = (
            ("tenant", tenant), ("model", model), ("status", status),
            ("submitted_by", submitted_by),
        )  # fmt: skip
        for column, value in filters:
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        sql = (
            f"SELECT seq, {_JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)}"
            " ORDER BY seq DESC LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, (*args, limit + 1)).fetchall()
        page = rows[:limit]
        cursor = int(page[-1]["seq"]) if len(rows) > limit else None
        return [_job(r) for r in page], cursor

    def lease(
        self,
        owner: str,
        now: float,
        visibility_s: float,
        exclude: set[tuple[str, int]],
        room: Callable[[tuple[str, int]], int] = lambda key: 1,
        limit: int = 1,
    ) -> list[Lease]:
        skip = " AND (model, version) NOT IN (VALUES " + ", ".join(["(?, ?)"] * len(exclude))
        skip = skip + ")" if exclude else ""
        args = [v for pair in sorted(exclude) for v in pair]
        with self._tx() as db:
            # A few more candidates than wanted: some may be over their version's room.
            rows = db.execute(
                f"SELECT seq, model, version FROM jobs WHERE {_RUNNABLE} AND run_after <= ?{skip}"
                f" ORDER BY priority DESC, seq LIMIT ?",
                (now, *args, limit * 4),
            ).fetchall()
            taken: list[int] = []
            used: collections.Counter[tuple[str, int]] = collections.Counter()
            for row in rows:
                key = (row["model"], int(row["version"]))
                if used[key] < room(key):
                    used[key] += 1
                    taken.append(int(row["seq"]))
                    if len(taken) == limit:
                        break
            if not taken:
                return []
            leased = db.execute(
                f"UPDATE jobs SET status = 'running', attempts = attempts + 1,"
                f" lease_owner = ?, lease_token = lease_token + 1, lease_until = ?,"
                f" started_at = COALESCE(started_at, ?)"
                f" WHERE seq IN ({', '.join('?' * len(taken))}) RETURNING id, lease_token",
                (owner, now + visibility_s, now, *taken),
            ).fetchall()
            found = [(self._get(db, r["id"]), int(r["lease_token"])) for r in leased]
        leases = [Lease(job, token) for job, token in found if job is not None]
        return sorted(leases, key=lambda lease: (-lease.job.priority, lease.job.created_at))

    def extend(self, owner: str, until: float) -> int:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET lease_until = ? WHERE status = 'running' AND lease_owner = ?",
                (until, owner),
            )
            return cur.rowcount

    def release(self, job_id: str, token: int, now: float) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET status = 'queued', attempts = attempts - 1, run_after = ?,"
                " lease_owner = NULL, lease_until = NULL WHERE id = ? AND status = 'running'"
                " AND lease_token = ?",
                (now, job_id, token),
            )
            return cur.rowcount == 1

    def complete(self, job_id: str, token: int, result: bytes, now: float) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET status = 'succeeded', result = ?, finished_at = ?,"
                " expires_at = ? + result_ttl_s, error = NULL, lease_owner = NULL,"
                " lease_until = NULL WHERE id = ? AND status = 'running' AND lease_token = ?",
                (result, now, now, job_id, token),
            )
            if cur.rowcount != 1:
                return False
            self._schedule_deliveries(db, job_id, now)
            return True

    def fail(
        self, job_id: str, token: int, error: str, now: float, retry_at: float | None
    ) -> Status | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT attempts, errors FROM jobs WHERE id = ? AND status = 'running'"
                " AND lease_token = ?",
                (job_id, token),
            ).fetchone()
            if row is None:
                return None
            errors = _with_error(row["errors"], row["attempts"], now, error)
            return self._after_failure(db, job_id, errors, error, now, retry_at)

    def _after_failure(
        self,
        db: sqlite3.Connection,
        job_id: str,
        errors: str,
        error: str,
        now: float,
        retry_at: float | None,
    ) -> Status:
        if retry_at is not None:
            db.execute(
                "UPDATE jobs SET status = 'failed', run_after = ?, error = ?, errors = ?,"
                " lease_owner = NULL, lease_until = NULL WHERE id = ?",
                (retry_at, error, errors, job_id),
            )
            return "failed"
        db.execute(
            "UPDATE jobs SET status = 'dead', finished_at = ?, error = ?, errors = ?,"
            " lease_owner = NULL, lease_until = NULL WHERE id = ?",
            (now, error, errors, job_id),
        )
        self._schedule_deliveries(db, job_id, now)
        return "dead"

    def _schedule_deliveries(self, db: sqlite3.Connection, job_id: str, now: float) -> None:
        row = db.execute("SELECT webhook, output_uri FROM jobs WHERE id = ?", (job_id,)).fetchone()
        for kind, target in (("webhook", row["webhook"]), ("output", row["output_uri"])):
            if target:
                db.execute(
                    "INSERT INTO deliveries (job_id, kind, target, status, next_at)"
                    " VALUES (?, ?, ?, 'pending', ?)",
                    (job_id, kind, target, now),
                )

    def reclaim(self, now: float, *, not_owner: str | None = None) -> list[Job]:
        args: tuple[float | str, ...]
        if not_owner is None:
            cond, args, why = "lease_until <= ?", (now,), "its lease expired (the worker stopped)"
        else:
            cond, args = "(lease_owner IS NULL OR lease_owner != ?)", (not_owner,)
            why = "the platform running it stopped"
        with self._tx() as db:
            rows = db.execute(
                f"SELECT id, attempts, max_attempts, errors FROM jobs"
                f" WHERE status = 'running' AND {cond}",
                args,
            ).fetchall()
            for row in rows:
                error = f"attempt {row['attempts']} was lost: {why}"
                errors = _with_error(row["errors"], row["attempts"], now, error)
                again = now if row["attempts"] < row["max_attempts"] else None
                self._after_failure(db, row["id"], errors, error, now, again)
            found = [self._get(db, row["id"]) for row in rows]
        return [j for j in found if j is not None]

    def cancel(self, job_id: str, now: float) -> Job | None:
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE jobs SET status = 'cancelled', finished_at = ?,"
                f" expires_at = ? + result_ttl_s WHERE id = ? AND {_RUNNABLE}",
                (now, now, job_id),
            )
            job = self._get(db, job_id)
        if job is not None and cur.rowcount == 0:
            raise JobStateError(f"job {job_id} is {job.status}; only a queued job can be cancelled")
        return job

    def requeue_dead(self, job_id: str, now: float) -> Job | None:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET status = 'queued', attempts = 0, run_after = ?, error = NULL,"
                " finished_at = NULL WHERE id = ? AND status = 'dead'",
                (now, job_id),
            )
            return self._get(db, job_id) if cur.rowcount == 1 else None

    def delete_dead(self, job_id: str) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM jobs WHERE id = ? AND status = 'dead'", (job_id,))
            return cur.rowcount == 1

    def backlog(self) -> dict[tuple[str, int], int]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT model, version, COUNT(*) FROM jobs WHERE {_RUNNABLE}"
                " GROUP BY model, version"
            ).fetchall()
        return {(r[0], int(r[1])): int(r[2]) for r in rows}

    def purge(self, now: float) -> int:
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM jobs WHERE expires_at <= ? AND status IN ('succeeded', 'cancelled')",
                (now,),
            )
            return cur.rowcount

    # -- deliveries --------------------------------------------------------------------------

    def due_deliveries(self, now: float, limit: int, lease_s: float) -> list[Delivery]:
        with self._lock:  # a read first: most looks find nothing, and need no write
            row = self._db.execute(
                "SELECT 1 FROM deliveries WHERE status = 'pending' AND next_at <= ? LIMIT 1",
                (now,),
            ).fetchone()
        if row is None:
            return []
        with self._tx() as db:
            rows = db.execute(
                "UPDATE deliveries SET next_at = ? WHERE id IN (SELECT id FROM deliveries"
                " WHERE status = 'pending' AND next_at <= ? ORDER BY next_at LIMIT ?)"
                " RETURNING id, job_id, kind, target, status, attempts, next_at, last_error,"
                " delivered_at",
                (now + lease_s, now, limit),
            ).fetchall()
        return [_delivery(r) for r in rows]

    def delivery_done(
        self, delivery_id: int, now: float, *, error: str | None, retry_at: float | None
    ) -> None:
        if error is None:
            status, next_at, delivered = "delivered", now, now
        else:
            status = "pending" if retry_at is not None else "failed"
            next_at, delivered = retry_at or now, None
        with self._tx() as db:
            db.execute(
                "UPDATE deliveries SET status = ?, attempts = attempts + 1, next_at = ?,"
                " last_error = ?, delivered_at = ? WHERE id = ?",
                (status, next_at, error, delivered, delivery_id),
            )

    # -- triggers ----------------------------------------------------------------------------

    def add_trigger(self, trigger: Trigger) -> None:
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO triggers (name, tenant, model, version, watch, pattern, output,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        trigger.name, trigger.tenant, trigger.model, trigger.version,
                        trigger.watch, trigger.pattern, trigger.output, trigger.created_at,
                    ),
                )  # fmt: skip
            except sqlite3.IntegrityError:
                raise JobStateError(f"trigger {trigger.name!r} exists; remove it first") from None

    def triggers(self, tenant: str | None = None) -> list[Trigger]:
        sql = (
            "SELECT name, tenant, model, version, watch, pattern, output, created_at FROM triggers"
        )
        with self._lock:
            if tenant is None:
                rows = self._db.execute(sql + " ORDER BY name").fetchall()
            else:
                rows = self._db.execute(
                    sql + " WHERE tenant = ? ORDER BY name", (tenant,)
                ).fetchall()
        return [Trigger(**dict(r)) for r in rows]

    def remove_trigger(self, name: str) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM triggers WHERE name = ?", (name,))
            return cur.rowcount == 1

    def trigger_file_seen(self, source: TriggerFile) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM trigger_files WHERE trigger = ? AND path = ? AND sha256 = ?",
                (source.trigger, source.path, source.sha256),
            ).fetchone()
        return row is not None
