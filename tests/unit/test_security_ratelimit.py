"""Token buckets, daily quotas and the per-tenant/per-key limiter, on fake time."""

from __future__ import annotations

import re

import pytest

from zeroserve.security import DailyQuota, Decision, Limits, RateLimiter, TokenBucket, headers

DAY = 86400.0


def test_bucket_worked_example_from_the_docstring() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=5)
    decisions = [bucket.take(0.0) for _ in range(5)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    assert decisions[-1].reset_s == pytest.approx(2.5)

    denied = bucket.take(0.0)
    assert not denied.allowed
    assert (denied.limit, denied.remaining) == (5, 0)
    assert denied.retry_after_s == pytest.approx(0.5)

    assert bucket.level(1.0) == pytest.approx(2.0)
    assert bucket.take(0.25).allowed is False  # half a token
    assert bucket.take(0.5).allowed is True
    assert bucket.full(3.0)
    assert bucket.level(100.0) == 5.0  # never above burst


def test_check_does_not_take() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=1)
    for _ in range(3):
        assert bucket.check(0.0).allowed
    assert bucket.take(0.0).allowed
    assert not bucket.check(0.0).allowed
    assert not bucket.take(0.0).allowed


def test_a_denied_take_costs_nothing() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=2)
    bucket.take(0.0, cost=2)
    assert not bucket.take(0.5).allowed
    assert bucket.level(1.0) == pytest.approx(1.0)
    assert bucket.take(1.0).allowed


def test_a_clock_stepping_back_adds_no_tokens() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=3)
    bucket.take(10.0, cost=3)
    assert not bucket.take(5.0).allowed
    assert bucket.level(5.0) == 0.0
    assert bucket.take(11.0).allowed


def test_cost_above_burst_and_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="cost = 4 exceeds burst = 3"):
        TokenBucket(1.0, 3).take(0.0, cost=4)
    with pytest.raises(ValueError, match="rate_per_s = 0, must be greater than 0"):
        TokenBucket(0, 3)
    with pytest.raises(ValueError, match="burst = 0, must be at least 1"):
        TokenBucket(1.0, 0)


def test_daily_quota_resets_at_utc_midnight() -> None:
    quota = DailyQuota(3)
    t = 5 * DAY + 3600.0  # 01:00 UTC
    assert [quota.take(t).remaining for _ in range(3)] == [2, 1, 0]
    denied = quota.take(t + 10)
    assert not denied.allowed
    assert denied.remaining == 0
    assert denied.retry_after_s == pytest.approx(DAY - 3610.0)
    assert denied.reset_s == denied.retry_after_s
    assert quota.used(t) == 3
    assert quota.used(6 * DAY) == 0
    assert quota.take(6 * DAY).remaining == 2
    with pytest.raises(ValueError, match="daily quota = 0, must be at least 1"):
        DailyQuota(0)
    with pytest.raises(ValueError, match="cost = 4 exceeds daily quota = 3"):
        quota.check(0.0, cost=4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_per_s": 1.0}, "rate_per_s = 1.0, burst = None: set both or neither"),
        ({"burst": 3}, "rate_per_s = None, burst = 3: set both or neither"),
        ({"rate_per_s": -1.0, "burst": 3}, "rate_per_s = -1.0"),
        ({"daily_quota": 0}, "daily quota = 0"),
    ],
)
def test_limits_are_validated(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Limits(**kwargs)  # type: ignore[arg-type]


def test_no_limits_means_no_headers() -> None:
    limiter = RateLimiter()
    decision = limiter.check(tenant="acme", key="k1", now=0.0)
    assert decision.allowed
    assert decision.limit is None
    assert headers(decision) == {}


def test_the_tighter_of_tenant_and_key_limits_decides() -> None:
    limiter = RateLimiter(
        tenant=Limits(rate_per_s=1.0, burst=10), key=Limits(rate_per_s=1.0, burst=3)
    )
    first = limiter.check(tenant="acme", key="k1", now=0.0)
    assert (first.allowed, first.limit, first.remaining, first.source) == (True, 3, 2, "key.rate")
    limiter.check(tenant="acme", key="k1", now=0.0)
    limiter.check(tenant="acme", key="k1", now=0.0)
    denied = limiter.check(tenant="acme", key="k1", now=0.0)
    assert (denied.allowed, denied.source, denied.retry_after_s) == (False, "key.rate", 1.0)
    assert headers(denied) == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "3",
        "Retry-After": "1",
    }


def test_a_request_denied_by_its_key_costs_the_tenant_nothing() -> None:
    limiter = RateLimiter(tenant=Limits(rate_per_s=0.001, burst=4), key=Limits(1.0, 2))
    assert [limiter.check(tenant="acme", key="k1", now=0.0).allowed for _ in range(5)] == [
        True, True, False, False, False,
    ]  # fmt: skip
    # k1's three denials took nothing from the tenant: k2 still gets the other two.
    k2 = [limiter.check(tenant="acme", key="k2", now=0.0) for _ in range(3)]
    assert [d.allowed for d in k2] == [True, True, False]
    assert k2[1].source == "tenant.rate"
    assert k2[1].remaining == 0
    assert k2[2].source == "tenant.rate"


def test_a_request_denied_by_its_tenant_costs_the_key_nothing() -> None:
    limiter = RateLimiter(tenant=Limits(rate_per_s=1.0, burst=1), key=Limits(0.001, 3))
    outcomes = [
        limiter.check(tenant="acme", key="k1", now=now) for now in (0.0, 0.0, 1.0, 1.0, 2.0, 3.0)
    ]
    assert [d.allowed for d in outcomes] == [True, False, True, False, True, False]
    assert [d.source for d in outcomes if not d.allowed] == [
        "tenant.rate", "tenant.rate", "key.rate",
    ]  # fmt: skip
    # Equal remaining (0): the key's bucket, slower to refill, is the one reported.
    assert (outcomes[4].source, outcomes[4].remaining) == ("key.rate", 0)


def test_the_quota_outlasts_the_bucket_in_retry_after() -> None:
    limiter = RateLimiter(tenant=Limits(rate_per_s=1.0, burst=1, daily_quota=1))
    assert limiter.check(tenant="acme", key=None, now=0.0).allowed
    denied = limiter.check(tenant="acme", key=None, now=0.5)
    assert (denied.source, denied.retry_after_s) == ("tenant.quota", DAY - 0.5)
    assert headers(denied)["Retry-After"] == "86400"
    assert limiter.check(tenant="acme", key=None, now=DAY).allowed


def test_retry_after_is_at_least_one_second() -> None:
    decision = Decision(False, 5, 0, retry_after_s=0.01, reset_s=0.01)
    assert headers(decision)["Retry-After"] == "1"
    assert headers(decision)["X-RateLimit-Reset"] == "1"
    assert "Retry-After" not in headers(Decision(True, 5, 4, 0.0, 0.5))


def test_overrides_per_tenant_and_per_key() -> None:
    limiter = RateLimiter(tenant=Limits(rate_per_s=1.0, burst=1))
    limiter.set_limits("tenant", "big", Limits(rate_per_s=1.0, burst=100))
    limiter.set_limits("tenant", "free", Limits())
    limiter.set_limits("key", "k9", Limits(daily_quota=1))
    assert limiter.check(tenant="big", key=None, now=0.0).remaining == 99
    assert all(limiter.check(tenant="free", key=None, now=0.0).allowed for _ in range(50))
    assert limiter.check(tenant="big", key="k9", now=0.0).allowed
    assert limiter.check(tenant="big", key="k9", now=0.0).source == "key.quota"
    limiter.set_limits("tenant", "free", None)  # back to the default
    assert limiter.check(tenant="free", key=None, now=0.0).allowed
    assert not limiter.check(tenant="free", key=None, now=0.0).allowed


def test_idle_entries_are_evicted_first_and_the_size_stays_bounded() -> None:
    limiter = RateLimiter(tenant=Limits(rate_per_s=1.0, burst=2), max_entries=3)
    limiter.check(tenant="busy", key=None, now=0.0)
    limiter.check(tenant="busy", key=None, now=0.0)
    limiter.check(tenant="idle1", key=None, now=0.0)
    limiter.check(tenant="idle2", key=None, now=0.0)
    assert len(limiter) == 3
    # At t = 1.5 the idle tenants' buckets are full again; "busy" is still refilling.
    limiter.check(tenant="new", key=None, now=1.5)
    assert len(limiter) == 2
    # busy kept its state: 0 tokens at t = 0, 1.5 at t = 1.5, so one request and then "no".
    assert limiter.check(tenant="busy", key=None, now=1.5).allowed
    assert not limiter.check(tenant="busy", key=None, now=1.5).allowed
    for i in range(10):  # nobody idle: the least recently used goes
        limiter.check(tenant=f"t{i}", key=None, now=1.5)
        assert len(limiter) <= 3
    with pytest.raises(ValueError, match="max_entries = 1"):
        RateLimiter(max_entries=1)
