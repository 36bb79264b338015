"""Rate limits and daily quotas per tenant and per key: pure decisions fed by a clock.

A token bucket holds up to `burst` tokens and gains `rate_per_s` per second; a request costs one
token. Worked example, rate 2/s, burst 5, starting full at t = 0: five requests at t = 0 pass and
leave 0 tokens; a sixth is denied with `retry_after_s` = 0.5 (one token takes 1/2 s); at t = 1.0
there are 2 tokens again, and at t = 2.5 the bucket is full (`reset_s` is that time from now).

A daily quota counts requests per UTC day (`now` is Unix time, so the day is `now // 86400`),
and resets at 00:00 UTC. Quotas are counted in the gateway's memory: a restart forgives the
day's count, which is acceptable for a single-machine platform.

`RateLimiter` asks every limit that applies (tenant rate, tenant quota, key rate, key quota)
first and takes from all of them only if all allow, so a request denied by one limit costs
nothing from the others.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

__all__ = ["DailyQuota", "Decision", "Limits", "RateLimiter", "Scope", "TokenBucket", "headers"]

DAY_S = 86400
Scope = Literal["tenant", "key"]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int | None  # the deciding limit's size (burst or daily quota); None: none applies
    remaining: int  # requests left under it after this one
    retry_after_s: float  # 0.0 when allowed
    reset_s: float  # until the deciding limit is fully replenished
    source: str = ""  # which limit decided: "tenant.rate", "key.quota", ...


UNLIMITED = Decision(allowed=True, limit=None, remaining=0, retry_after_s=0.0, reset_s=0.0)


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s = {rate_per_s}, must be greater than 0")
        if burst < 1:
            raise ValueError(f"burst = {burst}, must be at least 1")
        self.rate_per_s, self.burst = rate_per_s, burst
        self._tokens = float(burst)  # a new bucket starts full
        self._updated_at: float | None = None

    def level(self, now: float) -> float:
        if self._updated_at is None:
            return self._tokens
        elapsed = max(0.0, now - self._updated_at)  # a clock stepping back adds nothing
        return min(float(self.burst), self._tokens + elapsed * self.rate_per_s)

    def full(self, now: float) -> bool:
        return self.level(now) >= self.burst

    def check(self, now: float, cost: int = 1) -> Decision:
        """What `take` would decide, without taking."""
        if cost > self.burst:
            raise ValueError(f"cost = {cost} exceeds burst = {self.burst}: it could never pass")
        tokens = self.level(now)
        if tokens >= cost:
            left = tokens - cost
            return Decision(True, self.burst, math.floor(left), 0.0, self._refill_s(left))
        wait_s = (cost - tokens) / self.rate_per_s
        return Decision(False, self.burst, math.floor(tokens), wait_s, self._refill_s(tokens))

    def take(self, now: float, cost: int = 1) -> Decision:
        decision = self.check(now, cost)
        if decision.allowed:
            self._tokens = self.level(now) - cost
            self._updated_at = now if self._updated_at is None else max(self._updated_at, now)
        return decision

    def _refill_s(self, tokens: float) -> float:
        return (self.burst - tokens) / self.rate_per_s


class DailyQuota:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"daily quota = {limit}, must be at least 1")
        self.limit = limit
        self._day: int | None = None
        self._used = 0

    def used(self, now: float) -> int:
        return self._used if self._day == _day(now) else 0

    def check(self, now: float, cost: int = 1) -> Decision:
        if cost > self.limit:
            raise ValueError(f"cost = {cost} exceeds daily quota = {self.limit}")
        used = self.used(now)
        reset_s = (_day(now) + 1) * DAY_S - now
        if used + cost <= self.limit:
            return Decision(True, self.limit, self.limit - used - cost, 0.0, reset_s)
        return Decision(False, self.limit, self.limit - used, reset_s, reset_s)

    def take(self, now: float, cost: int = 1) -> Decision:
        decision = self.check(now, cost)
        if decision.allowed:
            self._used, self._day = self.used(now) + cost, _day(now)
        return decision


def _day(now: float) -> int:
    return math.floor(now / DAY_S)


@dataclass(frozen=True)
class Limits:
    """The limits of one tenant or one key; a field left None is not limited."""

    rate_per_s: float | None = None
    burst: int | None = None
    daily_quota: int | None = None

    def __post_init__(self) -> None:
        if (self.rate_per_s is None) != (self.burst is None):
            raise ValueError(
                f"rate_per_s = {self.rate_per_s}, burst = {self.burst}: set both or neither"
            )
        if self.rate_per_s is not None and self.burst is not None:
            TokenBucket(self.rate_per_s, self.burst)  # validates both
        if self.daily_quota is not None:
            DailyQuota(self.daily_quota)


class _Limit(Protocol):
    def check(self, now: float, cost: int = 1) -> Decision: ...

    def take(self, now: float, cost: int = 1) -> Decision: ...


@dataclass
class _Entry:
    limits: Limits
    bucket: TokenBucket | None = field(init=False)
    quota: DailyQuota | None = field(init=False)

    def __post_init__(self) -> None:
        rate, burst, quota = self.limits.rate_per_s, self.limits.burst, self.limits.daily_quota
        self.bucket = None if rate is None or burst is None else TokenBucket(rate, burst)
        self.quota = None if quota is None else DailyQuota(quota)

    def idle(self, now: float) -> bool:
        """Forgetting this entry changes nothing: the bucket is full, the day's count is 0."""
        bucket_idle = self.bucket is None or self.bucket.full(now)
        return bucket_idle and (self.quota is None or self.quota.used(now) == 0)


class RateLimiter:
    """Buckets and quotas per tenant and per key, created on first use.

    At most `max_entries` are held. When full, idle entries (see `_Entry.idle`) are dropped;
    if none is idle the least recently used one is, which may forgive part of its day's quota.
    Entries exist only for authenticated keys and their tenants, so a `max_entries` above the
    number of keys never reaches that second case.

    Not thread-safe: it belongs to the gateway's event loop, which calls it between awaits.
    """

    def __init__(
        self, *, tenant: Limits | None = None, key: Limits | None = None, max_entries: int = 100_000
    ) -> None:
        if max_entries < 2:
            raise ValueError(f"max_entries = {max_entries}, must be at least 2")
        self._defaults: dict[Scope, Limits] = {
            "tenant": tenant or Limits(),
            "key": key or Limits(),
        }
        self._overrides: dict[tuple[Scope, str], Limits] = {}
        self._entries: OrderedDict[tuple[Scope, str], _Entry] = OrderedDict()
        self.max_entries = max_entries

    def set_limits(self, scope: Scope, name: str, limits: Limits | None) -> None:
        """Limits for one tenant or key; `Limits()` lifts all, None returns to the default."""
        if limits is None:
            self._overrides.pop((scope, name), None)
        else:
            self._overrides[(scope, name)] = limits
        self._entries.pop((scope, name), None)

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, *, tenant: str, key: str | None, now: float, cost: int = 1) -> Decision:
        """Decide a request of `tenant` made with key prefix `key` (None: no key, open mode)."""
        limits = self._applicable(tenant, key, now)
        checked = [(source, lim, lim.check(now, cost)) for source, lim in limits]
        denied = [replace(d, source=s) for s, _, d in checked if not d.allowed]
        if denied:  # the limit that frees up last is the one the client must wait for
            return max(denied, key=lambda d: d.retry_after_s)
        taken = [replace(lim.take(now, cost), source=s) for s, lim, _ in checked]
        # The fewest requests left binds; on a tie, the limit that takes longer to refill.
        return min(taken, key=lambda d: (d.remaining, -d.reset_s), default=UNLIMITED)

    def _applicable(self, tenant: str, key: str | None, now: float) -> list[tuple[str, _Limit]]:
        names: list[tuple[Scope, str]] = [("tenant", tenant)]
        if key is not None:
            names.append(("key", key))
        out: list[tuple[str, _Limit]] = []
        for scope, name in names:
            entry = self._entry(scope, name, now)
            if entry.bucket is not None:
                out.append((f"{scope}.rate", entry.bucket))
            if entry.quota is not None:
                out.append((f"{scope}.quota", entry.quota))
        return out

    def _entry(self, scope: Scope, name: str, now: float) -> _Entry:
        entry = self._entries.get((scope, name))
        if entry is not None:
            self._entries.move_to_end((scope, name))
            return entry
        if len(self._entries) >= self.max_entries:
            self._evict(now)
        limits = self._overrides.get((scope, name), self._defaults[scope])
        entry = self._entries[(scope, name)] = _Entry(limits)
        return entry

    def _evict(self, now: float) -> None:
        for name in [n for n, e in self._entries.items() if e.idle(now)]:
            del self._entries[name]
        while len(self._entries) >= self.max_entries:
            self._entries.popitem(last=False)


def headers(decision: Decision) -> dict[str, str]:
    """Response headers for a decision; none when no limit applies.

    `X-RateLimit-Reset` is in seconds from now, like `Retry-After`'s delay-seconds form
    (RFC 9110 §10.2.3) and the IETF RateLimit header draft, so client clocks do not matter.
    """
    if decision.limit is None:
        return {}
    out = {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(math.ceil(decision.reset_s)),
    }
    if not decision.allowed:
        out["Retry-After"] = str(max(1, math.ceil(decision.retry_after_s)))
    return out
