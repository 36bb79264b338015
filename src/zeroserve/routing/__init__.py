"""Routing: which version serves an unversioned request (traffic split; later shadow,
fallback and circuit breaking), and which requests travel together (the batcher)."""

from zeroserve.routing.batcher import Waiting, take_batch
from zeroserve.routing.traffic import pick_version

__all__ = ["Waiting", "pick_version", "take_batch"]
