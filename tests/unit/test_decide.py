"""Scaling decisions on a fake clock: start for queued work within bounds, stop what idled."""

from __future__ import annotations

import pytest

from zeroserve.scaling import InstanceLoad, PoolLoad, instances_to_start, instances_to_stop
from zeroserve.spec import ScalingPolicy

POLICY = ScalingPolicy(min_instances=0, max_instances=4, concurrency=4, idle_timeout_s=10)


@pytest.mark.parametrize(
    ("load", "min_instances", "expected"),
    [
        (PoolLoad(queued=0, in_flight=0, ready=0, starting=0), 0, 0),  # idle at zero stays
        (PoolLoad(queued=1, in_flight=0, ready=0, starting=0), 0, 1),  # cold: start one
        (PoolLoad(queued=1, in_flight=0, ready=0, starting=1), 0, 0),  # already starting
        (PoolLoad(queued=10, in_flight=3, ready=1, starting=0), 0, 3),  # ceil(13/4) = 4
        (PoolLoad(queued=100, in_flight=4, ready=1, starting=0), 0, 3),  # capped at max 4
        (PoolLoad(queued=0, in_flight=0, ready=0, starting=0), 2, 2),  # warm pool
        (PoolLoad(queued=9, in_flight=0, ready=0, starting=0, stopping=3), 0, 1),  # 1 slot left
    ],
)
def test_instances_to_start(load: PoolLoad, min_instances: int, expected: int) -> None:
    got = instances_to_start(load, POLICY, min_instances=min_instances, now=0.0, backoff_until=0.0)
    assert got == expected


def test_no_start_during_backoff_after_a_failed_start() -> None:
    load = PoolLoad(queued=5, in_flight=0, ready=0, starting=0)
    assert instances_to_start(load, POLICY, min_instances=0, now=1.0, backoff_until=1.5) == 0
    assert instances_to_start(load, POLICY, min_instances=0, now=1.5, backoff_until=1.5) == 2


def test_idle_instances_stop_oldest_first_down_to_min() -> None:
    now = 0.0
    fleet = [
        InstanceLoad("a", in_flight=0, last_active=now),
        InstanceLoad("b", in_flight=0, last_active=now + 2),
        InstanceLoad("c", in_flight=1, last_active=now),  # busy: never stopped
    ]
    kw = {"min_instances": 0, "queued": 0}
    assert instances_to_stop(fleet, POLICY, now=now + 9.9, **kw) == []
    assert instances_to_stop(fleet, POLICY, now=now + 10, **kw) == ["a"]
    assert instances_to_stop(fleet, POLICY, now=now + 12, **kw) == ["a", "b"]
    assert instances_to_stop(fleet, POLICY, now=now + 12, min_instances=2, queued=0) == ["a"]
    assert instances_to_stop(fleet, POLICY, now=now + 12, min_instances=0, queued=1) == []


def test_policy_validation_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="max_instances = 1 must be >= min_instances = 2"):
        ScalingPolicy(min_instances=2, max_instances=1)


def test_templates_evicted_least_recently_used_first() -> None:
    from zeroserve.instances.snapshots import templates_to_evict

    sizes = {"a": 60, "b": 50, "c": 40}
    used = {"a": 1.0, "b": 2.0, "c": 3.0}
    assert templates_to_evict(sizes, used, budget_bytes=150) == []
    assert templates_to_evict(sizes, used, budget_bytes=100) == ["a"]
    assert templates_to_evict(sizes, used, budget_bytes=45) == ["a", "b"]
    assert templates_to_evict(sizes, {**used, "a": 9.0}, budget_bytes=100) == ["b"]
    assert templates_to_evict(sizes, used, budget_bytes=0) == ["a", "b", "c"]
    # The newest template alone exceeds the budget: it goes, the others that fit stay.
    assert templates_to_evict({"a": 20, "b": 170}, {"a": 1.0, "b": 2.0}, budget_bytes=30) == ["b"]


def test_estimated_wait_for_admission() -> None:
    from zeroserve.scaling.decide import estimated_wait_s

    kw = {"concurrency": 4, "max_instances": 4, "service_s": 0.01, "start_s": 0.05}
    free = PoolLoad(queued=0, in_flight=3, ready=1, starting=0)
    assert estimated_wait_s(free, **kw) == 0.0
    busy = PoolLoad(queued=12, in_flight=8, ready=2, starting=0)
    assert estimated_wait_s(busy, **kw) == pytest.approx(0.02)  # the docstring's example
    cold = PoolLoad(queued=0, in_flight=0, ready=0, starting=1)
    assert estimated_wait_s(cold, **kw) == pytest.approx(0.05)
