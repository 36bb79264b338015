"""Pure scaling decisions: functions of the pool's load, its policy and `now`.

Worked example: concurrency 4, 10 requests queued and 3 in flight, 1 instance ready and none
starting -> demand 13 needs ceil(13 / 4) = 4 instances -> start 3 (if max_instances allows).
The autoscaling issue replaces the demand estimate with windowed averages (Knative KPA);
the shape of the decision (load in, a number out) stays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from zeroserve.spec import ScalingPolicy

__all__ = [
    "InstanceLoad",
    "PoolLoad",
    "estimated_wait_s",
    "instances_to_start",
    "instances_to_stop",
]


@dataclass(frozen=True)
class PoolLoad:
    queued: int  # invocations waiting for a free instance slot
    in_flight: int  # invocations running on instances
    ready: int  # instances serving
    starting: int  # instances loading their model
    stopping: int = 0  # instances told to stop, not yet gone (still hold memory)


@dataclass(frozen=True)
class InstanceLoad:
    instance_id: str
    in_flight: int
    last_active: float  # clock time of its last finished invocation (or of its start)


def instances_to_start(
    load: PoolLoad, policy: ScalingPolicy, *, min_instances: int, now: float, backoff_until: float
) -> int:
    """How many instances to start now so queued work gets a slot, within the bounds."""
    demand = load.queued + load.in_flight
    wanted = max(math.ceil(demand / policy.concurrency), min_instances)
    # Stopping instances still count against the ceiling: max_instances is a hard bound
    # on processes, not only on the ones that serve.
    room = policy.max_instances - (load.ready + load.starting + load.stopping)
    missing = wanted - (load.ready + load.starting)
    if now < backoff_until:
        return 0  # a start just failed: do not spin on a model that cannot load
    return max(0, min(missing, room))


def instances_to_stop(
    instances: Sequence[InstanceLoad],
    policy: ScalingPolicy,
    *,
    min_instances: int,
    queued: int,
    now: float,
) -> list[str]:
    """Instances idle for `idle_timeout_s`, oldest first, never going below min_instances."""
    if queued:
        return []
    idle = sorted(
        (i for i in instances if i.in_flight == 0 and now - i.last_active >= policy.idle_timeout_s),
        key=lambda i: i.last_active,
    )
    removable = max(0, len(instances) - min_instances)
    return [i.instance_id for i in idle[:removable]]


def estimated_wait_s(
    load: PoolLoad, *, concurrency: int, max_instances: int, service_s: float, start_s: float
) -> float:
    """How long a request arriving now would wait for a slot: the admission check refuses a
    request whose deadline is shorter (503 now beats 504 later).

    Worked example: 2 instances x concurrency 4, all 8 slots busy, 12 queued, 10 ms a call ->
    the 8 running finish at 10 ms, the next 8 at 20 ms, when the new request gets its slot:
    ceil((8 + 12 + 1 - 8) / 8) = 2 rounds -> 20 ms.
    """
    slots = load.ready * concurrency
    if load.in_flight + load.queued < slots:
        return 0.0  # a free slot now
    if load.ready == 0 or (load.starting and load.ready + load.starting <= max_instances):
        # Waiting on instances that are starting (or will be): they bring their own slots.
        upcoming = max(1, load.ready + load.starting) * concurrency
        rounds = math.ceil((load.queued + 1) / upcoming)
        return start_s + max(0, rounds - 1) * service_s
    rounds = math.ceil((load.in_flight + load.queued + 1 - slots) / slots)
    return rounds * service_s
