"""The registry interface: one owner of models, versions and traffic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from zeroserve.spec import TrafficSplit, VersionSpec

__all__ = ["ModelRecord", "Registry", "RegistryError"]


class RegistryError(Exception):
    """A request the registry cannot honour (e.g. an unknown model)."""


@dataclass(frozen=True)
class ModelRecord:
    name: str
    created_at: float
    traffic: tuple[TrafficSplit, ...]
    versions: tuple[VersionSpec, ...]

    @property
    def tenant(self) -> str:
        """The owner: the tenant that deployed the first version."""
        return self.versions[0].tenant if self.versions else "default"

    @property
    def latest(self) -> VersionSpec:
        return self.versions[-1]

    def version(self, number: int) -> VersionSpec | None:
        for v in self.versions:
            if v.version == number:
                return v
        return None


class Registry(Protocol):
    def next_version(self, model: str) -> int: ...

    def add_version(self, spec: VersionSpec, *, route_all_traffic: bool = True) -> VersionSpec:
        """Store a new immutable version; by default it takes 100 % of the model's traffic."""
        ...

    def get(self, model: str) -> ModelRecord | None: ...

    def list_models(self) -> list[ModelRecord]: ...

    def set_traffic(self, model: str, traffic: list[TrafficSplit]) -> ModelRecord: ...

    def delete(self, model: str) -> bool: ...

    def close(self) -> None: ...
