"""Platform settings: the one place that reads the environment.

Every setting can come from a `zeroserve up` flag or a `ZEROSERVE_*` environment variable;
flags win. Values are validated here with messages that name the bad value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = ["Settings", "default_state_dir", "default_url"]

MiB = 1024 * 1024


def default_state_dir() -> Path:
    return Path(os.environ.get("ZEROSERVE_STATE_DIR", "~/.zeroserve")).expanduser()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} = {raw!r} must be an integer") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} = {raw!r} must be a number") from None


@dataclass(frozen=True)
class Settings:
    state_dir: Path = field(default_factory=default_state_dir)
    host: str = "127.0.0.1"
    port: int = 8080
    # Largest inference request body; bigger bodies get 413 before they are read in full.
    max_body_bytes: int = 16 * MiB
    # Largest artifact upload.
    max_artifact_bytes: int = 4096 * MiB
    # How long an invocation may wait in its pool's queue for an instance (503 after).
    queue_timeout_s: float = 60.0
    # How long an instance may take to load its model before the start counts as failed.
    start_timeout_s: float = 120.0
    # Artifact store root; default is a folder in the state dir. Any fsspec URI works.
    artifact_store: str = ""
    # How instances start: "fork" (from the fork server, the default) or "spawn" (a new
    # interpreter each; the slow path, kept for comparison and as the fallback).
    instance_start: str = "fork"
    # Memory that snapshot templates may hold together (PSS); least recently used go first.
    snapshot_memory_mb: int = 1024
    # Require an API key on every route but health. On whenever `host` is not loopback.
    auth: bool = False
    # Fernet key for secrets at rest: a file outside the state dir (or $ZEROSERVE_SECRETS_KEY).
    secrets_key_file: str = ""
    # -- asynchronous jobs --
    # A leased job not renewed for this long is queued again (its worker is presumed dead).
    job_visibility_s: float = 30.0
    # Jobs running at once, over all versions (each version also at most its capacity).
    job_max_in_flight: int = 256
    # HMAC key for webhook signatures; default: a random key kept in the state dir.
    webhook_secret: str = ""
    webhook_max_attempts: int = 8
    # First retry of a failed webhook or output write after up to this long (doubling).
    delivery_backoff_s: float = 1.0
    # How often triggers list their watched folders.
    trigger_poll_s: float = 1.0

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        base = cls(
            max_body_bytes=_env_int("ZEROSERVE_MAX_BODY_BYTES", 16 * MiB),
            max_artifact_bytes=_env_int("ZEROSERVE_MAX_ARTIFACT_BYTES", 4096 * MiB),
            queue_timeout_s=_env_float("ZEROSERVE_QUEUE_TIMEOUT_S", 60.0),
            start_timeout_s=_env_float("ZEROSERVE_START_TIMEOUT_S", 120.0),
            artifact_store=os.environ.get("ZEROSERVE_ARTIFACT_STORE", ""),
            instance_start=os.environ.get("ZEROSERVE_INSTANCE_START", "fork"),
            snapshot_memory_mb=_env_int("ZEROSERVE_SNAPSHOT_MEMORY_MB", 1024),
            auth=os.environ.get("ZEROSERVE_AUTH", "") in ("1", "true", "yes"),
            secrets_key_file=os.environ.get("ZEROSERVE_SECRETS_KEY_FILE", ""),
            job_visibility_s=_env_float("ZEROSERVE_JOB_VISIBILITY_S", 30.0),
            job_max_in_flight=_env_int("ZEROSERVE_JOB_MAX_IN_FLIGHT", 256),
            webhook_secret=os.environ.get("ZEROSERVE_WEBHOOK_SECRET", ""),
            webhook_max_attempts=_env_int("ZEROSERVE_WEBHOOK_MAX_ATTEMPTS", 8),
            delivery_backoff_s=_env_float("ZEROSERVE_DELIVERY_BACKOFF_S", 1.0),
            trigger_poll_s=_env_float("ZEROSERVE_TRIGGER_POLL_S", 1.0),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = replace(base, **given)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port = {self.port} must be between 1 and 65535")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes = {self.max_body_bytes} must be at least 1024")
        if self.queue_timeout_s <= 0:
            raise ValueError(f"queue_timeout_s = {self.queue_timeout_s} must be > 0")
        if self.start_timeout_s <= 0:
            raise ValueError(f"start_timeout_s = {self.start_timeout_s} must be > 0")
        if self.instance_start not in ("fork", "spawn"):
            raise ValueError(f"instance_start = {self.instance_start!r} must be fork or spawn")
        self._validate_jobs()
        if self.snapshot_memory_mb < 0:
            raise ValueError(f"snapshot_memory_mb = {self.snapshot_memory_mb} must be >= 0")

    @property
    def auth_required(self) -> bool:
        """Auth is on when asked for, and always when listening beyond loopback."""
        return self.auth or self.host not in ("127.0.0.1", "localhost", "::1")

    def _validate_jobs(self) -> None:
        if self.job_visibility_s < 1:
            raise ValueError(f"job_visibility_s = {self.job_visibility_s} must be >= 1")
        if self.job_max_in_flight < 1:
            raise ValueError(f"job_max_in_flight = {self.job_max_in_flight} must be >= 1")
        if self.webhook_max_attempts < 1:
            raise ValueError(f"webhook_max_attempts = {self.webhook_max_attempts} must be >= 1")
        if self.trigger_poll_s <= 0 or self.delivery_backoff_s < 0:
            raise ValueError("trigger_poll_s must be > 0 and delivery_backoff_s >= 0")

    @property
    def registry_path(self) -> Path:
        return self.state_dir / "registry.db"

    @property
    def artifact_store_uri(self) -> str:
        return self.artifact_store or (self.state_dir / "artifacts").resolve().as_uri()

    @property
    def jobs_path(self) -> Path:
        return self.state_dir / "jobs.db"

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"


def default_url() -> str:
    """Where the CLI finds the platform."""
    return os.environ.get("ZEROSERVE_URL", "http://127.0.0.1:8080")
