"""The windowed autoscaler on a fake clock: scenarios from now = 0, one sample a second."""

from __future__ import annotations

import itertools

from zeroserve.scaling.autoscaler import AutoscalerState, Decision, Sample, decide
from zeroserve.spec import ScalingPolicy

# concurrency 10 x utilisation 0.5 = 5 requests per instance.
POLICY = ScalingPolicy(
    max_instances=20, concurrency=10, target_utilization=0.5, idle_timeout_s=30,
    stable_window_s=60, panic_window_s=6,
)  # fmt: skip


def _run(load: list[float], policy: ScalingPolicy = POLICY, ready: int = 1,
         follow: bool = True, min_instances: int = 0) -> list[Decision]:  # fmt: skip
    """Feed one sample per second; `ready` follows each decision when `follow`."""
    samples: list[Sample] = []
    state = AutoscalerState()
    out = []
    for t, value in enumerate(load):
        samples.append(Sample(float(t), value))
        d = decide(samples, policy, ready=ready, min_instances=min_instances, state=state,
                   now=float(t))  # fmt: skip
        state = d.state
        ready = d.desired if follow else ready
        out.append(d)
    return out


def test_steady_load_settles_on_load_over_target_per_instance() -> None:
    decisions = _run([20.0] * 90, ready=4)
    assert decisions[-1].desired == 4  # 20 / 5
    assert not decisions[-1].panicking


def test_a_ramp_is_followed_up() -> None:
    decisions = _run([float(t) / 4 for t in range(120)], ready=1)
    assert decisions[10].desired < decisions[60].desired <= decisions[-1].desired
    assert decisions[-1].desired == 5  # the last 60 s averaged 22.25 -> ceil(22.25 / 5)


def test_a_spike_panics_and_never_scales_down_while_panicking() -> None:
    decisions = _run([5.0] * 30 + [60.0] * 5 + [5.0] * 20, ready=1)
    spike = decisions[34]
    assert spike.panicking
    assert spike.desired >= 6  # the 6 s window's average wants many more than 1 instance
    during = [d.desired for d in decisions[30:55]]
    assert all(b >= a for a, b in itertools.pairwise(during))  # up only


def test_idle_goes_to_zero_after_the_idle_timeout_not_the_window() -> None:
    decisions = _run([10.0] * 10 + [0.0] * 45, ready=2)
    assert decisions[20].desired > 0  # 11 s idle: the window still remembers the load
    assert decisions[40].desired == 0  # 31 s idle > 30 s idle timeout
    assert _run([0.0] * 5, min_instances=2)[-1].desired == 2


def test_bounds_and_rates() -> None:
    capped = ScalingPolicy(max_instances=3, concurrency=10, target_utilization=0.5)
    assert _run([100.0] * 10, capped)[-1].desired == 3
    slow_up = POLICY.model_copy(update={"max_scale_up_rate": 2.0})
    first = _run([100.0], slow_up, ready=2, follow=False)[0]
    assert first.desired == 4  # 2 x 2, not the 20 the load wants
    slow_down = POLICY.model_copy(update={"max_scale_down_rate": 2.0, "idle_timeout_s": 3600})
    drop = _run([0.01], slow_down, ready=10, follow=False)[0]
    assert drop.desired == 5  # at most halved per decision


def test_scale_down_waits_for_the_delay() -> None:
    delayed = POLICY.model_copy(update={"scale_down_delay_s": 10.0, "stable_window_s": 6.0})
    decisions = _run([20.0] * 10 + [5.0] * 40, delayed, ready=4)
    assert decisions[12].desired == 4  # the lower size has not held for 10 s yet
    assert decisions[-1].desired == 1


def test_idle_ends_a_panic_and_scales_to_zero() -> None:
    short = POLICY.model_copy(update={"idle_timeout_s": 2.0})
    decisions = _run([5.0] * 10 + [80.0] * 3 + [0.0] * 5, short, ready=1)
    assert decisions[12].panicking
    assert decisions[-1].desired == 0
    assert not decisions[-1].panicking


def test_queue_depth_policy_for_async_pools() -> None:
    from zeroserve.scaling.autoscaler import desired_for_backlog

    assert desired_for_backlog(900, 5.0, POLICY) == 3  # 900 / (5 x 60)
    assert desired_for_backlog(0, 5.0, POLICY, min_instances=1) == 1
    assert desired_for_backlog(0, 5.0, POLICY) == 0
    assert desired_for_backlog(3, 0.0, POLICY) == 1  # throughput not known yet: start one
    assert desired_for_backlog(10**6, 1.0, POLICY) == POLICY.max_instances
