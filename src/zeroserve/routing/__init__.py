"""Routing: which version serves an unversioned request (traffic split; later shadow,
fallback and circuit breaking)."""

from zeroserve.routing.traffic import pick_version

__all__ = ["pick_version"]
