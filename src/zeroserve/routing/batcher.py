"""Dynamic batching: which queued invocations go to the model together, as a pure function.

Requests join a batch when they are compatible with the oldest one (same input names,
datatypes and shapes past the first dimension), in arrival order, until the rows reach
`max_batch_size`. A batch goes when it is full or reaches a preferred size, when the next
request cannot join it, or when its oldest request has waited `max_batch_delay_ms`.
Worked example: max 8 rows, delay 2 ms, three 1-row requests queued at t=0, 0.5, 1 ms -> at
t=1 ms wait until t=2 ms; at t=2 ms send 3.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from zeroserve.spec import BatchingPolicy

__all__ = ["Waiting", "take_batch"]


@dataclass(frozen=True)
class Waiting:
    rows: int  # the request's first dimension
    key: Hashable  # what must match to share a batch
    enqueued_at: float


def take_batch(
    waiting: Sequence[Waiting], policy: BatchingPolicy, now: float, *, send_partial: bool = False
) -> tuple[int, float | None]:
    """(how many from the head to send now as one batch, when to look again if none).

    `send_partial`: send what is there without waiting out the delay (the pool passes True
    when nothing is running, so a lone request at low load is not held back).
    """
    if not waiting:
        return 0, None
    if policy.max_batch_size <= 1:
        return 1, None
    head = waiting[0]
    count = rows = 0
    for item in waiting:
        if item.key != head.key or (count and rows + item.rows > policy.max_batch_size):
            return count, None  # the next cannot join: this batch is as full as it gets
        count += 1
        rows += item.rows
        if rows >= policy.max_batch_size or rows in policy.preferred_batch_sizes:
            return count, None
    send_at = head.enqueued_at + policy.max_batch_delay_ms / 1e3
    if now >= send_at or send_partial:
        return count, None
    return 0, send_at
