"""Snapshot templates and the pure choice of which to evict under the memory budget."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Template", "templates_to_evict"]


@dataclass
class Template:
    key: str  # model:version:sha256
    pid: int
    sock: socket.socket  # the fork server's channel to it
    last_used: float  # clock time of the last instance forked from it (or of its creation)


def templates_to_evict(
    sizes: Mapping[str, int], last_used: Mapping[str, float], budget_bytes: int
) -> list[str]:
    """Least recently used first, until the rest fit in the budget.

    E.g. sizes {a: 60 MB, b: 50 MB, c: 40 MB}, used in the order a, b, c, budget 100 MB:
    150 > 100 -> evict a (90 left, fits) -> ["a"]. With budget 55 MB, a alone exceeds it and
    goes first, then b (LRU) -> ["a", "b"]. A budget of 0 keeps none.
    """
    if budget_bytes <= 0:
        return sorted(sizes, key=lambda k: last_used.get(k, 0.0))
    # One that alone exceeds the budget goes first: evicting the others would not make it fit.
    evict = [key for key in sizes if sizes[key] > budget_bytes]
    total = sum(size for key, size in sizes.items() if key not in evict)
    for key in sorted(set(sizes) - set(evict), key=lambda k: last_used.get(k, 0.0)):
        if total <= budget_bytes:
            break
        evict.append(key)
        total -= sizes[key]
    return evict
