"""`zeroserve simulate`: replay a traffic trace through the platform's own scaling decisions on
a virtual clock, to see what a scaling policy would cost before it is deployed.

The same functions the pools use decide here: `instances_to_start` for requests that find no
free instance, `instances_to_stop` for idle instances, and the windowed `autoscaler.decide` on
every tick. What the simulator models instead of running: an instance takes `start_s` to
become ready, and each request occupies one of its `concurrency` slots for its service time
(from the trace, or `service_s`). Batching is not modelled.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zeroserve.scaling.autoscaler import AutoscalerState, Sample, decide
from zeroserve.scaling.decide import InstanceLoad, PoolLoad, instances_to_start, instances_to_stop
from zeroserve.spec import ScalingPolicy

__all__ = ["Arrival", "Report", "read_trace", "simulate"]

_TICK_S = 1.0  # the pools' tick for idle timeouts of 10 s and more


@dataclass(frozen=True)
class Arrival:
    time_s: float
    service_s: float | None = None


@dataclass
class Report:
    requests: int = 0
    cold_starts: int = 0
    peak_instances: int = 0
    instance_seconds: float = 0.0
    gb_seconds: float = 0.0
    queue_delays_s: list[float] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (time, instances)

    def percentile(self, values: Sequence[float], q: float) -> float:
        if not values:
            return 0.0
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)]


def read_trace(path: Path) -> list[Arrival]:
    """CSV rows `arrival_s[,service_s]`, seconds from the start; a header row is skipped."""
    arrivals: list[Arrival] = []
    with path.open(newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].strip().startswith("#"):
                continue
            try:
                t = float(row[0])
            except ValueError:
                if not arrivals:
                    continue  # the header
                raise ValueError(f"{path}: {row[0]!r} is not a number of seconds") from None
            service = float(row[1]) if len(row) > 1 and row[1].strip() else None
            arrivals.append(Arrival(t, service))
    return sorted(arrivals, key=lambda a: a.time_s)


@dataclass
class _Instance:
    id: str
    started_at: float
    ready_at: float
    in_flight: int = 0
    last_active: float = 0.0


class _Sim:
    def __init__(
        self, policy: ScalingPolicy, *, start_s: float, service_s: float, memory_mb: int
    ) -> None:
        self.policy = policy
        self.start_s = start_s
        self.service_s = service_s
        self.memory_gb = memory_mb / 1024
        self.report = Report()
        self.events: list[tuple[float, int, str, object]] = []
        self.seq = itertools.count()
        self.queue: deque[Arrival] = deque()
        self.ready: dict[str, _Instance] = {}
        self.starting: dict[str, _Instance] = {}
        self.samples: deque[Sample] = deque()
        self.state = AutoscalerState()
        self.desired = 0
        self.ids = itertools.count(1)

    def push(self, when: float, kind: str, payload: object = None) -> None:
        heapq.heappush(self.events, (when, next(self.seq), kind, payload))

    def floor(self) -> int:
        return max(self.policy.min_instances, self.desired)

    def pump(self, now: float) -> None:
        while self.queue:
            free = [i for i in self.ready.values() if i.in_flight < self.policy.concurrency]
            if not free:
                break
            inst = min(free, key=lambda i: i.in_flight)
            arrival = self.queue.popleft()
            inst.in_flight += 1
            service = arrival.service_s if arrival.service_s is not None else self.service_s
            self.report.queue_delays_s.append(now - arrival.time_s)
            self.report.latencies_s.append(now - arrival.time_s + service)
            self.push(now + service, "done", inst.id)
        load = PoolLoad(
            queued=len(self.queue),
            in_flight=sum(i.in_flight for i in self.ready.values()),
            ready=len(self.ready),
            starting=len(self.starting),
        )
        n = instances_to_start(
            load, self.policy, min_instances=self.floor(), now=now, backoff_until=0.0
        )
        for _ in range(n):
            inst = _Instance(f"i{next(self.ids)}", now, now + self.start_s)
            self.starting[inst.id] = inst
            self.report.cold_starts += 1
            self.push(inst.ready_at, "ready", inst.id)
        self.note(now)

    def note(self, now: float) -> None:
        count = len(self.ready) + len(self.starting)
        self.report.peak_instances = max(self.report.peak_instances, count)
        if not self.report.timeline or self.report.timeline[-1][1] != count:
            self.report.timeline.append((now, count))

    def stop(self, inst: _Instance, now: float) -> None:
        self.report.instance_seconds += now - inst.started_at

    def tick(self, now: float) -> None:
        demand = len(self.queue) + sum(i.in_flight for i in self.ready.values())
        self.samples.append(Sample(now, float(demand)))
        while self.samples and self.samples[0].time < now - self.policy.stable_window_s:
            self.samples.popleft()
        decision = decide(
            self.samples,
            self.policy,
            ready=len(self.ready),
            min_instances=self.policy.min_instances,
            state=self.state,
            now=now,
        )
        self.state, self.desired = decision.state, decision.desired
        loads = [InstanceLoad(i.id, i.in_flight, i.last_active) for i in self.ready.values()]
        for inst_id in instances_to_stop(
            loads, self.policy, min_instances=self.floor(), queued=len(self.queue), now=now
        ):
            self.stop(self.ready.pop(inst_id), now)
        self.pump(now)

    def run(self, arrivals: Iterable[Arrival]) -> Report:
        end = 0.0
        for a in arrivals:
            self.push(a.time_s, "arrive", a)
            self.report.requests += 1
            end = max(end, a.time_s)
        tick = min(_TICK_S, max(0.05, self.policy.idle_timeout_s / 10))
        horizon = end + self.policy.idle_timeout_s + self.policy.stable_window_s + 10 * tick
        self.push(0.0, "tick")
        now = 0.0
        while self.events:
            now, _, kind, payload = heapq.heappop(self.events)
            if kind == "arrive":
                assert isinstance(payload, Arrival)
                self.queue.append(payload)
                self.pump(now)
            elif kind == "ready":
                inst = self.starting.pop(str(payload))
                inst.last_active = now
                self.ready[inst.id] = inst
                self.pump(now)
            elif kind == "done":
                inst = self.ready[str(payload)]
                inst.in_flight -= 1
                inst.last_active = now
                self.pump(now)
            elif kind == "tick":
                self.tick(now)
                if now < horizon:
                    self.push(now + tick, "tick")
        for inst in [*self.ready.values(), *self.starting.values()]:
            self.stop(inst, now)  # warm instances still up at the end of the trace
        self.report.gb_seconds = self.report.instance_seconds * self.memory_gb
        return self.report


def simulate(
    arrivals: Iterable[Arrival],
    policy: ScalingPolicy,
    *,
    start_s: float = 0.05,
    service_s: float = 0.005,
    memory_mb: int = 512,
) -> Report:
    """Replay `arrivals` through the scaling decisions; see the module docstring."""
    return _Sim(policy, start_s=start_s, service_s=service_s, memory_mb=memory_mb).run(arrivals)
