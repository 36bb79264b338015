"""Secrets encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`).

The Fernet key comes from the `ZEROSERVE_SECRETS_KEY` environment variable or from a key file,
and a key file inside the state directory is refused: a backup or copy of the state directory
must not carry the key that opens it.

Each token encrypts `{"t": tenant, "n": name, "v": value}`, not the bare value, and reading
checks the tenant and name: Fernet has no associated data, and this stops someone with write
access to the file from moving tenant A's ciphertext into tenant B's row.

Values travel as `SecretValue`, whose repr and str are `SecretValue('***')` and `***`, so a
value that reaches a log line, an exception or a debugger shows no plaintext.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from cryptography.fernet import Fernet, InvalidToken

from zeroserve.security._db import open_db
from zeroserve.security.tenants import validate_tenant

__all__ = [
    "KEY_ENV_VAR",
    "KeySource",
    "SecretStore",
    "SecretValue",
    "SecretsError",
    "generate_key_file",
    "key_source",
    "validate_secret_name",
]

KEY_ENV_VAR = "ZEROSERVE_SECRETS_KEY"
_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")  # a portable environment variable name

_SCHEMA = """
CREATE TABLE IF NOT EXISTS secrets (
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    token      BLOB NOT NULL,            -- Fernet token of {"t", "n", "v"}
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, name)
);
"""


class SecretsError(Exception):
    """No usable key, a key in the wrong place, or a secret that cannot be read."""


class SecretValue:
    """A secret's plaintext, shown only by `reveal()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretValue('***')"

    def __str__(self) -> str:
        return "***"

    def __reduce__(self) -> NoReturn:
        # Pickling would copy the plaintext into whatever carries the pickle.
        raise TypeError("SecretValue cannot be pickled; pass reveal() where the value is needed")

    # Immutable, so copies may be the object itself (copy would otherwise use __reduce__).
    def __copy__(self) -> SecretValue:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> SecretValue:
        return self


@dataclass(frozen=True)
class KeySource:
    """Where the Fernet key comes from: the env var's value, or else a key file."""

    env_value: str | None = None
    key_file: Path | None = None

    def __repr__(self) -> str:  # the env value is the key itself
        env = None if self.env_value is None else "***"
        return f"KeySource(env_value={env!r}, key_file={self.key_file!r})"


def key_source(environ: Mapping[str, str], key_file: Path | None = None) -> KeySource:
    """The key source from the environment (passed in by the settings module) and a flag."""
    value = environ.get(KEY_ENV_VAR) or None
    return KeySource(env_value=value, key_file=None if value else key_file)


def validate_secret_name(name: str) -> str:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ValueError(
            f"invalid secret name {name!r}: use 1-64 characters of A-Z, 0-9 and _, "
            "not starting with a digit (it becomes an environment variable)"
        )
    return name


def generate_key_file(path: Path, *, state_dir: Path | None = None) -> Path:
    """Write a new Fernet key to `path` (mode 0600); an existing file is never overwritten,
    since replacing the key would make every stored secret unreadable."""
    if state_dir is not None:
        _refuse_inside(path, state_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretsError(f"secrets key file {path} exists already; not overwriting it") from None
    try:
        os.fchmod(fd, 0o600)  # the umask may only have narrowed it; make it exact
        os.write(fd, Fernet.generate_key() + b"\n")
    finally:
        os.close(fd)
    return path


def _refuse_inside(key_file: Path, state_dir: Path) -> None:
    if key_file.resolve().is_relative_to(state_dir.resolve()):
        raise SecretsError(
            f"secrets key file {key_file} is inside the state directory {state_dir}; "
            "keep it elsewhere (e.g. ~/.config/zeroserve/secrets.key) so that a copy of the "
            "state is not also a copy of the key"
        )


def _load_fernet(source: KeySource, state_dir: Path) -> Fernet:
    if source.env_value:
        raw, origin = source.env_value.strip().encode(), f"${KEY_ENV_VAR}"
    elif source.key_file is not None:
        _refuse_inside(source.key_file, state_dir)
        try:
            raw, origin = source.key_file.read_bytes().strip(), str(source.key_file)
        except OSError as exc:
            raise SecretsError(f"cannot read secrets key file {source.key_file}: {exc}") from None
    else:
        raise SecretsError(f"no secrets key: set {KEY_ENV_VAR} or give a key file")
    try:
        return Fernet(raw)
    except ValueError:  # the message would not include the key, but say what is expected
        raise SecretsError(
            f"{origin} is not a Fernet key (32 bytes, url-safe base64); "
            "create one with generate_key_file"
        ) from None


class SecretStore:
    def __init__(self, db_path: Path, key_source: KeySource) -> None:
        self._fernet = _load_fernet(key_source, db_path.parent)
        self._lock = threading.Lock()
        self._db = open_db(db_path, _SCHEMA)

    def __repr__(self) -> str:
        return "SecretStore(...)"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def set(self, tenant: str, name: str, value: str | SecretValue, *, now: float) -> None:
        validate_tenant(tenant)
        validate_secret_name(name)
        plain = value.reveal() if isinstance(value, SecretValue) else value
        if not isinstance(plain, str):
            raise TypeError(f"secret {name} must be a str, not {type(plain).__name__}")
        payload = json.dumps({"t": tenant, "n": name, "v": plain}).encode()
        token = self._fernet.encrypt_at_time(payload, int(now))
        with self._lock:
            self._db.execute(
                "INSERT INTO secrets (tenant, name, token, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant, name) DO UPDATE SET token = excluded.token,"
                " updated_at = excluded.updated_at",
                (tenant, name, token, now),
            )

    def get(self, tenant: str, name: str) -> SecretValue:
        with self._lock:
            row = self._db.execute(
                "SELECT token FROM secrets WHERE tenant = ? AND name = ?", (tenant, name)
            ).fetchone()
        if row is None:
            raise KeyError(f"no secret {name!r} in tenant {tenant!r}")
        try:
            payload = json.loads(self._fernet.decrypt(row[0]))
        except InvalidToken:
            raise SecretsError(
                f"secret {name!r} of tenant {tenant!r} cannot be decrypted: "
                "wrong key, or the stored token was altered"
            ) from None
        if payload.get("t") != tenant or payload.get("n") != name:
            raise SecretsError(f"secret {name!r} of tenant {tenant!r} belongs to another row")
        return SecretValue(payload["v"])

    def names(self, tenant: str) -> builtins.list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name FROM secrets WHERE tenant = ? ORDER BY name", (tenant,)
            ).fetchall()
        return [r[0] for r in rows]

    def delete(self, tenant: str, name: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM secrets WHERE tenant = ? AND name = ?", (tenant, name)
            )
        return cur.rowcount > 0
