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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> InstanceSpec:
        return cls(**json.loads(raw))
