"""Batch formation on a fake clock."""

from __future__ import annotations

from zeroserve.routing import Waiting, take_batch
from zeroserve.spec import BatchingPolicy

POLICY = BatchingPolicy(max_batch_size=8, max_batch_delay_ms=2.0)


def _w(rows: int, at: float, key: str = "x") -> Waiting:
    return Waiting(rows=rows, key=key, enqueued_at=at)


def test_a_partial_batch_waits_for_the_delay_then_goes() -> None:
    queue = [_w(1, 0.0), _w(1, 0.0005), _w(1, 0.001)]
    assert take_batch(queue, POLICY, now=0.001) == (0, 0.002)
    assert take_batch(queue, POLICY, now=0.002) == (3, None)


def test_a_full_batch_goes_at_once() -> None:
    queue = [_w(1, 0.0) for _ in range(10)]
    assert take_batch(queue, POLICY, now=0.0) == (8, None)
    assert take_batch([_w(5, 0.0), _w(3, 0.0), _w(1, 0.0)], POLICY, now=0.0) == (2, None)


def test_rows_that_would_overflow_or_do_not_match_end_the_batch() -> None:
    assert take_batch([_w(5, 0.0), _w(4, 0.0)], POLICY, now=0.0) == (1, None)
    assert take_batch([_w(1, 0.0), _w(1, 0.0, key="y")], POLICY, now=0.0) == (1, None)
    assert take_batch([_w(20, 0.0)], POLICY, now=0.0) == (1, None)  # too big: alone


def test_batching_off_sends_one_at_a_time() -> None:
    off = BatchingPolicy()
    assert take_batch([_w(1, 0.0), _w(1, 0.0)], off, now=0.0) == (1, None)
    assert take_batch([], POLICY, now=0.0) == (0, None)


def test_a_preferred_size_goes_without_waiting() -> None:
    preferring = BatchingPolicy(max_batch_size=8, max_batch_delay_ms=2.0, preferred_batch_sizes=[4])
    queue = [_w(1, 0.0) for _ in range(5)]
    assert take_batch(queue, preferring, now=0.0) == (4, None)
    assert take_batch(queue[:3], preferring, now=0.0) == (0, 0.002)


def test_nothing_running_sends_a_partial_batch_at_once() -> None:
    queue = [_w(1, 0.0), _w(1, 0.0)]
    assert take_batch(queue, POLICY, now=0.0, send_partial=True) == (2, None)
