"""Versions, traffic policies and (later) tenants and keys."""

from zeroserve.registry.base import ModelRecord, Registry, RegistryError
from zeroserve.registry.sqlite import SqliteRegistry

__all__ = ["ModelRecord", "Registry", "RegistryError", "SqliteRegistry"]
