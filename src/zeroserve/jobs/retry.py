"""When to try again: exponential backoff with full jitter (a pure decision).

Full jitter spreads the retries of many jobs that failed together (an instance crash, a
restart) over the whole backoff interval instead of letting them return in lockstep.
See: "Exponential Backoff And Jitter", AWS Architecture Blog (2015).
"""

from __future__ import annotations

__all__ = ["backoff_s", "next_attempt_at"]


def backoff_s(attempt: int, base_s: float, max_s: float, rand: float) -> float:
    """The wait after failed attempt `attempt` (1-based): uniform in
    [0, min(max_s, base_s * 2**(attempt-1))], `rand` being uniform in [0, 1)."""
    ceiling = min(max_s, base_s * 2.0 ** min(attempt - 1, 62))
    return rand * ceiling


def next_attempt_at(
    attempts: int, max_attempts: int, now: float, base_s: float, max_s: float, rand: float
) -> float | None:
    """When the next attempt may start, or None when the attempts are spent (dead letter)."""
    if attempts >= max_attempts:
        return None
    return now + backoff_s(attempts, base_s, max_s, rand)
