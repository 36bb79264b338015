"""Warm pools for predictable peaks: schedules and prewarm floors, as pure functions.

A version's warm target is the most of: its `min_instances` (while it receives traffic), the
`min_instances` of any warm window open now, and a prewarm floor that has not expired.
Worked example: min_instances 0, window mon-fri 08:00-18:00 with 2, a prewarm of 5 until
09:30 -> Tuesday 09:00 gives 5, Tuesday 10:00 gives 2, Saturday 10:00 gives 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time

from zeroserve.spec import WarmWindow

__all__ = ["in_window", "warm_target"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _days(spec: str) -> set[int]:
    if spec.strip() in ("*", ""):
        return set(range(7))
    days: set[int] = set()
    for part in spec.lower().split(","):
        if "-" in part:
            first, last = (_DAYS.index(p.strip()) for p in part.split("-", 1))
            span = range(first, last + 1) if first <= last else [*range(first, 7), *range(last + 1)]
            days.update(span)
        else:
            days.add(_DAYS.index(part.strip()))
    return days


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def in_window(window: WarmWindow, now: datetime) -> bool:
    """Whether local time `now` falls in the window; an end before the start spans midnight
    (then the day named is the one the window starts on)."""
    start, end, t = _hhmm(window.start), _hhmm(window.end), now.time()
    days = _days(window.days)
    if start <= end:
        return now.weekday() in days and start <= t < end
    if t >= start:
        return now.weekday() in days
    return (now.weekday() - 1) % 7 in days and t < end


def warm_target(
    min_instances: int,
    windows: Sequence[WarmWindow],
    now_local: datetime,
    *,
    prewarm: int = 0,
    prewarm_until: float = 0.0,
    now: float = 0.0,
) -> int:
    scheduled = max((w.min_instances for w in windows if in_window(w, now_local)), default=0)
    floor = prewarm if now < prewarm_until else 0
    return max(min_instances, scheduled, floor)
