"""API keys in SQLite: created once, shown once, stored only as a salted hash.

A key reads `zs_<prefix>_<secret>`, e.g. `zs_k3x9a0qp_2m6Q...` (55 characters):

- the prefix is 8 random lower-case letters or digits. It is not secret: `keys ls` shows it, the
  audit log names the actor by it, and it is the row's lookup key;
- the secret is `secrets.token_urlsafe(32)`: 256 random bits, 43 url-safe characters.

Only `sha256(salt || key)` with a 16-byte per-key salt is stored. A deliberately slow hash
(scrypt) protects low-entropy passwords against guessing; a 256-bit random secret cannot be
guessed at any hash speed, and scrypt would add tens of milliseconds to every request. The salt
keeps two stores' hashes of one key unrelated.

What each role may do is in `zeroserve.security.permissions`.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import string
import threading
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from zeroserve.security._db import open_db, write_transaction
from zeroserve.security.tenants import DEFAULT_TENANT, validate_tenant

__all__ = ["KeyRecord", "KeyStore", "KeyStoreError", "Role", "parse_duration"]

# last_used_at is written at most this often per key: one write per request would turn every
# authenticated read into a disk write, and "last used" to the minute is what `keys ls` needs.
LAST_USED_RESOLUTION_S = 60.0

_KEY = re.compile(r"zs_([a-z0-9]{8})_([A-Za-z0-9_-]{43})")
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_DURATION = re.compile(r"([0-9]+)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    prefix       TEXT PRIMARY KEY,
    salt         BLOB NOT NULL,
    hash         BLOB NOT NULL,            -- sha256(salt || plaintext key)
    tenant       TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'deployer', 'invoker')),
    models       TEXT,                     -- JSON list; NULL = all of the tenant's models
    created_at   REAL NOT NULL,
    expires_at   REAL,
    revoked_at   REAL,
    last_used_at REAL,
    description  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant);
"""
_COLUMNS = (
    "prefix, tenant, role, models, created_at, expires_at, revoked_at, last_used_at, description"
)


class KeyStoreError(Exception):
    """A key request the store cannot honour (unknown prefix, bootstrap done already)."""


class Role(StrEnum):
    ADMIN = "admin"
    DEPLOYER = "deployer"
    INVOKER = "invoker"


@dataclass(frozen=True)
class KeyRecord:
    """Everything about a key except the key itself."""

    prefix: str
    tenant: str
    role: Role
    models: tuple[str, ...] | None  # None: all of the tenant's models
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None
    description: str

    def active(self, now: float) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at


def parse_duration(text: str) -> int:
    """`"30d"`, `"12h"`, `"15m"`, `"3600s"` -> seconds (2592000, 43200, 900, 3600)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: expected a whole number followed by s, m, h or d "
            "(e.g. 30d, 12h, 15m, 3600s)"
        )
    seconds = int(match[1]) * _UNIT_S[match[2]]
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be longer than zero")
    return seconds


class KeyStore:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = open_db(path, _SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(
        self,
        tenant: str,
        role: Role | str,
        *,
        now: float,
        models: builtins.list[str] | tuple[str, ...] | None = None,
        expires_in_s: float | None = None,
        description: str = "",
    ) -> tuple[str, KeyRecord]:
        """A new key: (plaintext, record). The plaintext is not stored; show it once."""
        record = _new_record(tenant, Role(role), now, models, expires_in_s, description)
        with self._lock, write_transaction(self._db) as db:
            return self._insert(db, record)

    def authenticate(self, plaintext: str, *, now: float) -> KeyRecord | None:
        """The key's record if it is well-formed, known, not revoked and not expired."""
        match = _KEY.fullmatch(plaintext) if isinstance(plaintext, str) else None
        if match is None:
            return None
        with self._lock:
            row = self._db.execute(
                f"SELECT salt, hash, {_COLUMNS} FROM api_keys WHERE prefix = ?", (match[1],)
            ).fetchone()
            # An unknown prefix returns sooner than a wrong secret; prefixes are not secret.
            if row is None or not hmac.compare_digest(_hash(row[0], plaintext), row[1]):
                return None
            record = _record(row[2:])
            if not record.active(now):
                return None
            last = record.last_used_at
            if last is None or now - last >= LAST_USED_RESOLUTION_S:
                self._db.execute(
                    "UPDATE api_keys SET last_used_at = ? WHERE prefix = ?", (now, record.prefix)
                )
                record = replace(record, last_used_at=now)
        return record

    def get(self, prefix: str) -> KeyRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM api_keys WHERE prefix = ?", (prefix,)
            ).fetchone()
        return None if row is None else _record(row)

    def list(self, tenant: str | None = None) -> builtins.list[KeyRecord]:
        """All keys (revoked and expired ones too), oldest first; of one tenant if given."""
        query = f"SELECT {_COLUMNS} FROM api_keys"
        args: tuple[str, ...] = ()
        if tenant is not None:
            query, args = query + " WHERE tenant = ?", (tenant,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created_at, prefix", args).fetchall()
        return [_record(r) for r in rows]

    def revoke(self, prefix: str, *, now: float) -> KeyRecord:
        """Revoke at once; revoking twice keeps the first time."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE prefix = ?",
                (now, prefix),
            )
        if cur.rowcount == 0:
            raise KeyStoreError(f"no key with prefix {prefix!r}")
        record = self.get(prefix)
        assert record is not None
        return record

    def bootstrap(self, *, now: float) -> tuple[str, KeyRecord]:
        """The first admin key, of tenant `default`, while no active admin key exists.

        Active, not any: after the last admin key is revoked or expired, whoever holds the
        state directory can recover. That person could edit the SQLite file anyway.
        """
        record = _new_record(DEFAULT_TENANT, Role.ADMIN, now, None, None, "bootstrap admin key")
        with self._lock, write_transaction(self._db) as db:
            row = db.execute(
                "SELECT prefix FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL"
                " AND (expires_at IS NULL OR expires_at > ?) LIMIT 1",
                (now,),
            ).fetchone()
            if row is not None:
                raise KeyStoreError(
                    f"an admin key exists already (prefix {row[0]}); "
                    "create more keys with it instead of bootstrapping"
                )
            return self._insert(db, record)

    def _insert(self, db: sqlite3.Connection, record: KeyRecord) -> tuple[str, KeyRecord]:
        while True:  # 36^8 prefixes: a collision is rare, and then we draw again
            prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
            if db.execute("SELECT 1 FROM api_keys WHERE prefix = ?", (prefix,)).fetchone():
                continue
            plaintext = f"zs_{prefix}_{secrets.token_urlsafe(32)}"
            salt = secrets.token_bytes(16)
            models = None if record.models is None else json.dumps(builtins.list(record.models))
            db.execute(
                "INSERT INTO api_keys (prefix, salt, hash, tenant, role, models, created_at,"
                " expires_at, revoked_at, last_used_at, description)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
                (prefix, salt, _hash(salt, plaintext), record.tenant, record.role.value, models,
                 record.created_at, record.expires_at, record.description),
            )  # fmt: skip
            return plaintext, replace(record, prefix=prefix)


def _hash(salt: bytes, plaintext: str) -> bytes:
    return hashlib.sha256(salt + plaintext.encode()).digest()


def _new_record(
    tenant: str,
    role: Role,
    now: float,
    models: builtins.list[str] | tuple[str, ...] | None,
    expires_in_s: float | None,
    description: str,
) -> KeyRecord:
    validate_tenant(tenant)
    if models is not None:
        if role is Role.ADMIN:
            raise ValueError("admin keys cannot be limited to models; use a deployer key")
        if not models or not all(isinstance(m, str) and m for m in models):
            raise ValueError(f"invalid model allow-list {models!r}: name at least one model")
    if expires_in_s is not None and expires_in_s <= 0:
        raise ValueError(f"expires_in_s = {expires_in_s}, must be greater than 0")
    return KeyRecord(
        prefix="", tenant=tenant, role=role,
        models=None if models is None else tuple(sorted(set(models))),
        created_at=now, expires_at=None if expires_in_s is None else now + expires_in_s,
        revoked_at=None, last_used_at=None, description=description,
    )  # fmt: skip


def _record(row: tuple[Any, ...]) -> KeyRecord:
    prefix, tenant, role, models, created, expires, revoked, used, description = row
    return KeyRecord(
        prefix=str(prefix), tenant=str(tenant), role=Role(role),
        models=None if models is None else tuple(json.loads(str(models))),
        created_at=float(created),
        expires_at=_opt_float(expires), revoked_at=_opt_float(revoked),
        last_used_at=_opt_float(used), description=str(description),
    )  # fmt: skip


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
