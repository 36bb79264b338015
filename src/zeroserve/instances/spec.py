"""What a backend needs to start one instance: plain data, so it can cross a process or a
cluster boundary (a Ray backend ships the same dict to an actor)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["InstanceSpec"]


@dataclass(frozen=True)
class InstanceSpec:
    instance_id: str
    model: str
    version: int
    runtime: str
    artifact_sha256: str
    store_uri: str
    cache_dir: str
    concurrency: int
    memory_mb: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # Start from the version's snapshot template (a loaded, warmed-up process) if one exists.
    snapshot: bool = False
    # CPU seconds the instance may use over its life (RLIMIT_CPU), None for no limit.
    cpu_limit_s: float | None = None
    # The instance's environment beyond the allowlist (sandbox.py): the version's secrets.
    # Values are secret: kept out of repr() and of `redacted()`, which is what logs may show.
    env: dict[str, str] = field(default_factory=dict, repr=False)
    # The instance's private temp dir (TMPDIR, HOME), made by the backend just before start.
    tmp_dir: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Everything, env values included: for the local channels that start an instance."""
        return asdict(self)

    def redacted(self) -> dict[str, Any]:
        """What may be logged or put in an error: env names only, never their values."""
        doc = asdict(self)
        doc["env"] = dict.fromkeys(self.env, "<redacted>")
        return doc

    def to_json(self) -> str:
        """Everything, env values included, like `as_dict`: never log it (`redacted`)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> InstanceSpec:
        return cls(**json.loads(raw))
