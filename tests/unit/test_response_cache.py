"""Response cache: keyed by canonical inputs, TTL on a fake clock, LRU bound."""

from __future__ import annotations

import numpy as np

from zeroserve.routing.cache import ResponseCache, input_digest
from zeroserve.spec import CachePolicy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_digest_is_canonical_and_distinguishes_what_matters() -> None:
    a = {"x": np.array([[1.0, 2.0]], np.float32), "y": np.array([b"hi"], dtype=object)}
    reordered = {"y": np.array([b"hi"], dtype=object), "x": np.array([[1.0, 2.0]], np.float32)}
    base = input_digest("t", "m", 1, a)
    assert base == input_digest("t", "m", 1, reordered)
    assert base != input_digest("t2", "m", 1, a)  # tenants never share entries
    assert base != input_digest("t", "m", 2, a)
    assert base != input_digest("t", "m", 1, {**a, "x": np.array([[1.0, 2.0]], np.float64)})
    assert base != input_digest("t", "m", 1, {**a, "x": np.array([1.0, 2.0], np.float32)})
    assert base != input_digest("t", "m", 1, {**a, "y": np.array([b"h", b"i"], dtype=object)})


def test_entries_expire_and_the_oldest_unused_go_first() -> None:
    clock = Clock()
    cache = ResponseCache(clock)
    policy = CachePolicy(ttl_s=10, max_entries=2)
    out = {"y": np.array([1])}
    cache.put(("m", 1), policy, "a", out)
    cache.put(("m", 1), policy, "b", out)
    assert cache.get(("m", 1), "a") is not None  # a is now the most recently used
    cache.put(("m", 1), policy, "c", out)
    assert cache.get(("m", 1), "b") is None
    assert cache.get(("m", 1), "a") is not None
    clock.now = 10.0
    assert cache.get(("m", 1), "a") is None
    assert cache.get(("m", 2), "a") is None


def test_cached_outputs_cannot_be_changed_by_a_caller() -> None:
    cache = ResponseCache(Clock())
    source = np.array([1, 2, 3])
    cache.put(("m", 1), CachePolicy(), "k", {"y": source})
    source[0] = 99
    hit = cache.get(("m", 1), "k")
    assert hit is not None
    assert hit["y"].tolist() == [1, 2, 3]
    assert not hit["y"].flags.writeable
