"""Traffic split: a pure choice of version from the model's traffic policy and a number in
[0, 1) that the caller draws (so tests pass fixed numbers instead of patching random)."""

from __future__ import annotations

from collections.abc import Sequence

from zeroserve.spec import TrafficSplit

__all__ = ["pick_version"]


def pick_version(traffic: Sequence[TrafficSplit], draw: float) -> int:
    """E.g. [(1, 90), (2, 10)] sends draws in [0, 0.9) to version 1 and [0.9, 1) to 2."""
    if not traffic:
        raise ValueError("the model has no traffic policy")
    point = draw * 100
    cumulative = 0
    for split in traffic:
        cumulative += split.percent
        if point < cumulative:
            return split.version
    return traffic[-1].version
