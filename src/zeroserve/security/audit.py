"""Append-only, hash-chained audit log in SQLite.

Row n stores `hash_n = sha256(canonical JSON of {seq, ts, tenant, actor, action, target,
detail, prev_hash})` with `prev_hash = hash_(n-1)` (64 zeros for row 1). `verify()` walks the
rows in order and recomputes every hash, so:

- an edited row no longer matches its own hash;
- an edited row whose hash was recomputed breaks the next row's `prev_hash` link;
- a deleted middle row leaves a gap in `seq`; rows moved around break links or hashes (`seq`
  is hashed);
- a deleted last row leaves nothing to link to, so `audit_head` (one row: the last seq and
  hash, written in the same transaction as each append) is checked against the end of the log.

Someone who can rewrite the whole file can rewrite the whole chain and the head too; to catch
that, keep `head()` somewhere else (a log line, a ticket) and pass it to `verify(anchor=...)`.
Triggers refuse UPDATE and DELETE on the rows, which stops accidents, not attackers.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroserve.security._db import open_db, write_transaction
from zeroserve.security.tenants import validate_tenant

__all__ = [
    "GENESIS_HASH", "AuditEntry", "AuditHead", "AuditLog", "VerifyResult", "invocation_detail",
]  # fmt: skip

GENESIS_HASH = "0" * 64
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_FIELDS = ("seq", "ts", "tenant", "actor", "action", "target", "detail", "prev_hash")
_COLUMNS = ", ".join((*_FIELDS, "hash"))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq       INTEGER PRIMARY KEY,
    ts        REAL NOT NULL,
    tenant    TEXT NOT NULL,
    actor     TEXT NOT NULL,            -- key prefix, or 'local'
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    detail    TEXT NOT NULL,            -- canonical JSON, hashed as stored
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_tenant_ts ON audit (tenant, ts);
CREATE TABLE IF NOT EXISTS audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: float
    tenant: str
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditHead:
    seq: int  # 0: empty log
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows_checked: int
    first_bad_seq: int | None
    reason: str  # "" when ok


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _row_hash(row: tuple[Any, ...]) -> str:
    """The hash of a row given as (seq, ts, tenant, actor, action, target, detail, prev_hash)."""
    return hashlib.sha256(_canonical(dict(zip(_FIELDS, row, strict=True))).encode()).hexdigest()


def invocation_detail(
    *, model: str, version: int, status: int, latency_ms: float, input_data: bytes,
    output_data: bytes,
) -> dict[str, Any]:  # fmt: skip
    """What an invocation leaves in the log: digests and sizes of its data, never the data."""
    return {
        "model": model,
        "version": version,
        "status": status,
        "latency_ms": round(latency_ms, 3),
        "input_sha256": hashlib.sha256(input_data).hexdigest(),
        "input_bytes": len(input_data),
        "output_sha256": hashlib.sha256(output_data).hexdigest(),
        "output_bytes": len(output_data),
    }


class AuditLog:
    def __init__(self, path: Path) -> None:
        # Appends read the head and write a row in one locked transaction; without that, two
        # writers could link to the same predecessor and fork the chain.
        self._lock = threading.Lock()
        self._db = open_db(path, _SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(
        self,
        *,
        tenant: str,
        actor: str,
        action: str,
        now: float,
        target: str = "",
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        _validate(tenant, actor, action)
        detail_json = _canonical(detail or {})
        with self._lock, write_transaction(self._db) as db:
            head = _read_head(db)
            fields = (head.seq + 1, float(now), tenant, actor, action, target, detail_json)
            row = (*fields, head.hash)
            digest = _row_hash(row)
            db.execute(
                f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, digest)
            )
            db.execute(
                "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id)"
                " DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                (row[0], digest),
            )
        return _entry((*row, digest))

    def append_many(self, entries: builtins.list[dict[str, Any]]) -> int:
        """Append several entries (each the keyword arguments of `append`) in one
        transaction, in order: how invocations are logged without a commit each."""
        for e in entries:
            _validate(e["tenant"], e["actor"], e["action"])
        with self._lock, write_transaction(self._db) as db:
            head = _read_head(db)
            for e in entries:
                fields = (head.seq + 1, float(e["now"]), e["tenant"], e["actor"], e["action"])
                row = (*fields, e.get("target", ""), _canonical(e.get("detail") or {}), head.hash)
                digest = _row_hash(row)
                db.execute(
                    f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*row, digest),
                )
                head = AuditHead(row[0], digest)
            if entries:
                db.execute(
                    "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id)"
                    " DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    (head.seq, head.hash),
                )
        return len(entries)

    def invocation(
        self,
        *,
        tenant: str,
        actor: str,
        now: float,
        model: str,
        version: int,
        status: int,
        latency_ms: float,
        input_data: bytes,
        output_data: bytes,
    ) -> AuditEntry:
        """Record one invocation by digests and sizes (see `invocation_detail`)."""
        detail = invocation_detail(
            model=model, version=version, status=status, latency_ms=latency_ms,
            input_data=input_data, output_data=output_data,
        )  # fmt: skip
        return self.append(
            tenant=tenant, actor=actor, action="model.invoke", now=now, target=model, detail=detail
        )

    def head(self) -> AuditHead:
        with self._lock:
            return _read_head(self._db)

    def list(
        self,
        *,
        since: float | None = None,
        tenant: str | None = None,
        action: str | None = None,
        limit: int = 100,
        after_seq: int = 0,
    ) -> builtins.list[AuditEntry]:
        """Entries in seq order; page with `after_seq` = the last seq of the previous page."""
        if not 1 <= limit <= 10_000:
            raise ValueError(f"limit = {limit}, must be between 1 and 10000")
        where, args = ["seq > ?"], builtins.list[object]([after_seq])
        for clause, value in (("ts >= ?", since), ("tenant = ?", tenant), ("action = ?", action)):
            if value is not None:
                where.append(clause)
                args.append(value)
        query = f"SELECT {_COLUMNS} FROM audit WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [_entry(r) for r in rows]

    def verify(self, *, anchor: AuditHead | None = None) -> VerifyResult:
        """Walk the whole chain; `anchor` is a head kept outside this file."""
        with self._lock:
            self._db.execute("BEGIN")  # one snapshot of rows and head, even if others append
            try:
                rows = self._db.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq")
                return _walk(rows, _read_head(self._db), anchor)
            finally:
                self._db.execute("COMMIT")


def _validate(tenant: str, actor: str, action: str) -> None:
    validate_tenant(tenant)
    if not actor or len(actor) > 64:
        raise ValueError(f"invalid actor {actor!r}: a key prefix or 'local'")
    if _ACTION.fullmatch(action) is None:
        raise ValueError(f"invalid action {action!r}: dotted lower-case words, e.g. 'key.create'")


def _read_head(db: sqlite3.Connection) -> AuditHead:
    row = db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    return AuditHead(0, GENESIS_HASH) if row is None else AuditHead(int(row[0]), str(row[1]))


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, ts, tenant, actor, action, target, detail, prev_hash, digest = row
    return AuditEntry(seq, ts, tenant, actor, action, target, json.loads(detail), prev_hash, digest)


def _walk(
    rows: Iterable[tuple[Any, ...]], head: AuditHead, anchor: AuditHead | None
) -> VerifyResult:
    last, checked = AuditHead(0, GENESIS_HASH), 0
    for row in rows:
        bad = _check_row(last, row)
        if bad is None and anchor is not None and row[0] == anchor.seq and row[8] != anchor.hash:
            bad = (anchor.seq, f"row {anchor.seq} differs from the anchor kept outside the log")
        if bad is not None:
            return VerifyResult(False, checked, *bad)
        last, checked = AuditHead(row[0], row[8]), checked + 1
    bad = _check_end(last, head, anchor)
    if bad is not None:
        return VerifyResult(False, checked, *bad)
    return VerifyResult(True, checked, None, "")


def _check_row(last: AuditHead, row: tuple[Any, ...]) -> tuple[int, str] | None:
    seq = row[0]
    if seq != last.seq + 1:
        return last.seq + 1, f"row {last.seq + 1} is missing (the next row is {seq})"
    if row[7] != last.hash:
        return seq, f"row {seq} does not link to row {last.seq}: one of them was altered or moved"
    if _row_hash(row[:8]) != row[8]:
        return seq, f"row {seq} does not match its hash: it was edited"
    return None


def _check_end(
    last: AuditHead, head: AuditHead, anchor: AuditHead | None
) -> tuple[int, str] | None:
    if anchor is not None and anchor.seq > last.seq:
        return last.seq + 1, f"the log ends at row {last.seq}; the anchor names row {anchor.seq}"
    if head.seq > last.seq:
        return last.seq + 1, f"the log ends at row {last.seq} but its head names row {head.seq}"
    if head.seq < last.seq:
        return head.seq + 1, f"rows after {head.seq} were added without updating the head"
    if head.hash != last.hash:
        return last.seq, f"row {last.seq} differs from the head's hash"
    return None
