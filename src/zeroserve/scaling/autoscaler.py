"""The windowed autoscaler, after Knative's KPA, as a pure function of samples and `now`.

Observed concurrency (requests queued + in flight) is sampled about once a second. The
stable window (default 60 s) and the panic window (default 6 s) each average it, and each
average becomes a size: ceil(average / (concurrency × target_utilization)). The stable size
drives normal scaling; when the panic size reaches `panic_threshold` × the ready instances
the pool panics: it follows the panic size and never scales down, until a stable window has
passed without another panic. Rates bound each step, a lower size must persist for the
scale-down delay, and with no traffic for the idle timeout the answer is 0 (scale to zero,
as `zeroserve deploy --idle-timeout` promises) whatever the windows still remember.

Worked example: concurrency 4 × 0.7 = 2.8 per instance; 1 instance ready; the last 6 s
averaged 14 in flight -> panic size ceil(14 / 2.8) = 5 >= 2 × 1 -> panic, desired 5
(rate: 5 <= 1000 × 1), bounded by max_instances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from zeroserve.spec import ScalingPolicy

__all__ = ["AutoscalerState", "Decision", "Sample", "decide", "desired_for_backlog"]


@dataclass(frozen=True)
class Sample:
    time: float
    concurrency: float  # queued + in flight at that time


@dataclass(frozen=True)
class AutoscalerState:
    panic_until: float = -math.inf  # panicking while now < panic_until
    panic_size: int = 0  # highest size asked for during this panic
    # (time, size) of recent recommendations, for the scale-down delay.
    recent: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class Decision:
    desired: int
    panicking: bool
    state: AutoscalerState
    stable_concurrency: float
    panic_concurrency: float


def _average(samples: Sequence[Sample], since: float) -> tuple[float, bool]:
    window = [s.concurrency for s in samples if s.time >= since]
    return (sum(window) / len(window), True) if window else (0.0, False)


def decide(
    samples: Sequence[Sample],
    policy: ScalingPolicy,
    *,
    ready: int,
    min_instances: int,
    state: AutoscalerState,
    now: float,
) -> Decision:
    per_instance = policy.concurrency * policy.target_utilization
    stable, _ = _average(samples, now - policy.stable_window_s)
    panic, _ = _average(samples, now - policy.panic_window_s)
    stable_size = math.ceil(stable / per_instance - 1e-9)
    panic_size = math.ceil(panic / per_instance - 1e-9)

    if ready and panic_size >= policy.panic_threshold * ready:
        state = replace(state, panic_until=now + policy.stable_window_s)
    panicking = now < state.panic_until
    if panicking:
        size = max(panic_size, state.panic_size, ready)  # up only
        state = replace(state, panic_size=size)
    else:
        size = stable_size
        state = replace(state, panic_size=0)

    size = min(size, math.ceil(max(ready, 1) * policy.max_scale_up_rate))
    size = max(size, math.floor(ready / policy.max_scale_down_rate))
    # Scale-down delay: act on the highest recommendation of the last delay_s.
    recent = tuple((t, n) for t, n in state.recent if t > now - policy.scale_down_delay_s)
    recent += ((now, size),)
    state = replace(state, recent=recent)
    size = max(n for _, n in recent)

    last_busy = max((s.time for s in samples if s.concurrency > 0), default=-math.inf)
    if now - last_busy >= policy.idle_timeout_s:
        # No traffic for the idle timeout: scale to zero, and whatever panic there was is over.
        size, panicking = 0, False
        state = AutoscalerState()
    desired = max(min_instances, min(size, policy.max_instances))
    return Decision(desired, panicking, state, stable, panic)


def desired_for_backlog(
    backlog: int,
    throughput_per_instance: float,
    policy: ScalingPolicy,
    *,
    drain_s: float = 60.0,
    min_instances: int = 0,
) -> int:
    """Queue-depth policy for asynchronous pools (jobs): enough instances to drain the backlog
    within `drain_s` at the throughput one instance was observed to reach, at least one while
    anything is queued, zero when nothing is.

    Worked example: 900 jobs queued, 5 jobs/s per instance, drain in 60 s -> 900 / (5 × 60)
    = 3 instances. Before any throughput is known (0), one instance starts and is measured.
    """
    if backlog <= 0:
        return min_instances
    if throughput_per_instance <= 0:
        wanted = 1
    else:
        wanted = math.ceil(backlog / (throughput_per_instance * drain_s))
    return max(min_instances, min(max(1, wanted), policy.max_instances))
