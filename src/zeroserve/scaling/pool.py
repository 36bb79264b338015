"""A pool: the instances of one version, and the queue in front of them.

The queue is what Knative calls the activator: a request to a version with no free instance
(also with none at all) waits here while instances start, and is refused only when it waited
`queue_timeout_s`. The pool collects its load, asks `decide.py` what to do, and actuates
through the backend; it never reads a pid or shares memory with an instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from zeroserve.instances import (
    Backend,
    Instance,
    InstanceDied,
    InstanceSpec,
    LimitExceeded,
    ModelError,
    StartError,
)
from zeroserve.metering import Metrics
from zeroserve.routing.batcher import Waiting, take_batch
from zeroserve.scaling.autoscaler import AutoscalerState, Sample, decide
from zeroserve.scaling.decide import (
    InstanceLoad,
    PoolLoad,
    estimated_wait_s,
    instances_to_start,
    instances_to_stop,
)
from zeroserve.spec import VersionSpec
from zeroserve.tensors import Tensors

__all__ = [
    "DeadlineExceeded",
    "DeadlineUnmeetable",
    "InstanceCpuLimit",
    "InstanceCrashed",
    "InstanceOutOfMemory",
    "InvocationTimeout",
    "Pool",
    "PoolClosed",
    "QueueFull",
    "QueueTimeout",
    "Result",
    "StartFailed",
    "instance_spec",
]

log = logging.getLogger("zeroserve.pool")

# A failed start blocks new starts for a while, doubling up to the cap, so a model that
# cannot load is not restarted in a tight loop (min_instances > 0 would otherwise spin).
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0
# An instance that died while loading (killed, crashed) is retried sooner, and the queued
# requests keep waiting for it, up to this many failed starts in a row.
_BACKOFF_CRASH_S = 0.1
_MAX_CRASHED_STARTS = 3
# An invocation whose instance died is retried once on another: inference has no side effects.
_MAX_ATTEMPTS = 2

# What the pool tells the platform (for the audit log), and with what: see Pool's on_event.
EventHook = Callable[[str, dict[str, Any]], None]


class QueueTimeout(Exception):
    """No instance slot freed up within the queue timeout."""


class InvocationTimeout(Exception):
    """The instance did not answer within the version's timeout_s."""


class InstanceCrashed(Exception):
    """The instance died while running the invocation, twice in a row."""


class InstanceOutOfMemory(Exception):
    """The instance went over its memory limit (memory_mb) while running or loading the
    invocation; it was replaced (503). The message names the limit."""


class InstanceCpuLimit(Exception):
    """The instance went over its CPU-time limit (cpu_limit_s) while running the invocation;
    it was replaced (503). The message names the limit."""


class StartFailed(Exception):
    """No instance could be started to serve the invocation."""


class PoolClosed(Exception):
    """The pool was closed (model removed or platform stopping)."""


class QueueFull(Exception):
    """The version's queue holds max_queue invocations already: shed this one (429)."""


class DeadlineUnmeetable(Exception):
    """The request's deadline is shorter than its expected wait: refused at admission (503)."""


class DeadlineExceeded(Exception):
    """The request's deadline passed while it waited for an instance (504)."""


@dataclass(frozen=True)
class Result:
    outputs: Tensors
    cold: bool  # the invocation waited for an instance to start
    instance_id: str
    batch_size: int = 1  # requests that shared the model call
    cache: str | None = None  # "hit" or "miss" when the version has a response cache


def _limit_error(reason: str, message: str) -> Exception:
    """The core exception for going over a limit ("memory" or "cpu_limit")."""
    return InstanceOutOfMemory(message) if reason == "memory" else InstanceCpuLimit(message)


def _requests(batch: list[_Invocation]) -> list[dict[str, Any]] | None:
    """Each request of the batch in order, with its rows and context; None when no request
    has context (the common case costs nothing)."""
    if all(inv.context is None for inv in batch):
        return None
    return [{"rows": inv.waiting().rows, **(inv.context or {})} for inv in batch]


def _stack(batch: list[_Invocation]) -> Tensors:
    if len(batch) == 1:
        return batch[0].inputs
    return {name: np.concatenate([i.inputs[name] for i in batch]) for name in batch[0].inputs}


def _split(batch: list[_Invocation], outputs: Tensors) -> list[Tensors]:
    """Each request's rows of every output, in batch order."""
    if len(batch) == 1:
        return [outputs]
    sizes = [len(next(iter(i.inputs.values()))) for i in batch]
    total = sum(sizes)
    for name, array in outputs.items():
        if array.ndim == 0 or len(array) != total:
            raise ModelError(
                f"output {name!r} has {len(array) if array.ndim else 0} rows for a batch of"
                f" {total}; a batched model must return one row per input row"
            )
    cuts = np.cumsum(sizes)[:-1]
    parts = {name: np.split(array, cuts) for name, array in outputs.items()}
    return [{name: parts[name][k] for name in outputs} for k in range(len(batch))]


@dataclass
class _Invocation:
    inputs: Tensors
    future: asyncio.Future[Result]
    enqueued_at: float
    attempts: int = 0
    # What the model may learn of the request (job id, idempotency key); None: nothing.
    context: dict[str, Any] | None = None

    def waiting(self) -> Waiting:
        """How the batcher sees it: its rows, and what a batch mate must match."""
        arrays = list(self.inputs.values())
        if not arrays or any(a.ndim == 0 for a in arrays) or len({len(a) for a in arrays}) != 1:
            return Waiting(1, id(self), self.enqueued_at)  # not batchable: travels alone
        key = tuple(sorted((n, a.dtype.str, a.shape[1:]) for n, a in self.inputs.items()))
        return Waiting(len(arrays[0]), key, self.enqueued_at)


@dataclass
class _Slot:
    instance: Instance
    ready_at: float
    last_active: float
    in_flight: int = 0
    # Why the pool killed it or let it go ("timeout", "memory"); None: if it exits, it
    # crashed. Set, the slot takes no new work.
    killed_for: str | None = None


def instance_spec(
    v: VersionSpec,
    *,
    instance_id: str,
    store_uri: str,
    cache_dir: str,
    env: Mapping[str, str] | None = None,
) -> InstanceSpec:
    """What a backend needs to start an instance of version `v`; `env` is its environment
    beyond the allowlist (the version's secrets: see instances/sandbox.py)."""
    return InstanceSpec(
        instance_id=instance_id,
        model=v.model,
        version=v.version,
        runtime=v.runtime,
        artifact_sha256=v.artifact_sha256,
        store_uri=store_uri,
        cache_dir=cache_dir,
        concurrency=v.scaling.concurrency,
        memory_mb=v.memory_mb,
        options=v.options(),
        snapshot=v.snapshot,
        cpu_limit_s=v.cpu_limit_s,
        env=dict(env or {}),
    )


class Pool:
    def __init__(
        self,
        version: VersionSpec,
        *,
        backend: Backend,
        metrics: Metrics,
        store_uri: str,
        cache_dir: str,
        queue_timeout_s: float,
        start_timeout_s: float,
        min_instances: int,
        clock: Callable[[], float] = time.monotonic,
        env: Mapping[str, str] | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        """`env`: every instance's environment beyond the allowlist (the version's secrets).
        `on_event(name, fields)`: called when an instance goes over a limit, with
        ("instance.memory_exceeded", {model, version, instance, limit_mb}) or
        ("instance.cpu_limit_exceeded", {model, version, instance, limit_s}); it must not
        block (it runs on the event loop) and what it raises is logged, not raised."""
        self.version = version
        self.min_instances = min_instances
        self._backend = backend
        self._metrics = metrics
        self._store_uri = store_uri
        self._cache_dir = cache_dir
        self._queue_timeout_s = queue_timeout_s
        self._start_timeout_s = start_timeout_s
        self._clock = clock
        self._env = dict(env or {})
        self._on_event = on_event
        self._labels = (version.model, str(version.version))
        # Labelled children looked up once: _publish runs on every dispatch.
        self._gauges = (
            metrics.instances.labels(*self._labels),
            metrics.queue_depth.labels(*self._labels),
            metrics.in_flight.labels(*self._labels),
        )
        self._queue: deque[_Invocation] = deque()
        self._slots: dict[str, _Slot] = {}
        self._starting = 0
        self._stopping = 0
        self._backoff_s = 0.0
        self._backoff_until = 0.0
        self._failed_starts = 0
        self._closed = False
        self._started = asyncio.Event()  # set whenever an instance comes up
        self._batch_timer: asyncio.TimerHandle | None = None
        # The windowed autoscaler's inputs and memory (scaling/autoscaler.py).
        self._samples: deque[Sample] = deque()
        self._autoscaler = AutoscalerState()
        self._desired = 0
        # Moving averages of a model call and of an instance start, for deadline admission.
        self._service_s = 0.0
        self._start_s = 0.0
        self._serial = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())
        self._pump()

    # -- public ------------------------------------------------------------------------------

    async def infer(
        self,
        inputs: Tensors,
        deadline_s: float | None = None,
        context: dict[str, Any] | None = None,
    ) -> Result:
        """Run one request; `deadline_s` (from now) bounds its wait for an instance;
        `context` (job id, idempotency key) reaches a Python model that asks for it."""
        if self._closed:
            raise PoolClosed(f"version {self.version.version} of {self.version.model!r} is gone")
        if len(self._queue) >= self.version.scaling.max_queue:
            self._queue = deque(i for i in self._queue if not i.future.done())
            if len(self._queue) >= self.version.scaling.max_queue:
                raise QueueFull(
                    f"{len(self._queue)} requests are already waiting for"
                    f" {self.version.model!r} v{self.version.version} (max_queue); retry later"
                )
        if deadline_s is not None:
            self._admit(deadline_s)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Result] = loop.create_future()
        inv = _Invocation(inputs, fut, self._clock(), context=context)
        self._queue.append(inv)
        if deadline_s is not None:
            timer = loop.call_later(deadline_s, self._expire, inv, deadline_s)
            fut.add_done_callback(lambda _: timer.cancel())
        self._pump()
        return await fut

    def _admit(self, deadline_s: float) -> None:
        load = self._load()
        wait = estimated_wait_s(
            load,
            concurrency=self.version.scaling.concurrency,
            max_instances=self.version.scaling.max_instances,
            service_s=self._service_s,
            start_s=self._start_s,
        )
        if wait > deadline_s:
            raise DeadlineUnmeetable(
                f"the expected wait of {wait * 1e3:.0f} ms for an instance exceeds the"
                f" request's deadline of {deadline_s * 1e3:.0f} ms"
            )

    def _expire(self, inv: _Invocation, deadline_s: float) -> None:
        if not inv.future.done() and inv.attempts == 0:  # still waiting, never dispatched
            inv.future.set_exception(DeadlineExceeded(
                f"the request's deadline of {deadline_s * 1e3:.0f} ms passed while it waited"
                " for an instance"
            ))  # fmt: skip

    def set_min_instances(self, n: int) -> None:
        self.min_instances = n
        self._pump()

    def status(self) -> dict[str, int]:
        return {
            "instances": len(self._slots),
            "starting": self._starting,
            "stopping": self._stopping,
            "queued": len(self._queue),
            "in_flight": sum(s.in_flight for s in self._slots.values()),
        }

    async def wait_for_instances(self, n: int, *, timeout_s: float) -> int:
        """Wait until `n` instances serve (or the timeout); returns how many do."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(self._slots) < n and (left := deadline - loop.time()) > 0:
            self._started.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._started.wait(), timeout=left)
        return len(self._slots)

    def instance_ids(self) -> list[str]:
        return list(self._slots)

    async def close(self) -> None:
        self._closed = True
        self._ticker.cancel()
        while self._queue:
            inv = self._queue.popleft()
            if not inv.future.done():
                inv.future.set_exception(
                    PoolClosed("the model is being removed or the platform is stopping")
                )
        slots = list(self._slots.values())
        self._slots.clear()
        await asyncio.gather(*(s.instance.stop() for s in slots), return_exceptions=True)
        self._metrics.instance_exits.labels(*self._labels, "shutdown").inc(len(slots))
        for task in list(self._tasks):
            task.cancel()
        self._metrics.forget(*self._labels)

    # -- decide and actuate ------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _free_slot(self) -> _Slot | None:
        best: _Slot | None = None
        for slot in self._slots.values():
            free = (
                slot.in_flight < self.version.scaling.concurrency
                and slot.instance.alive
                and slot.killed_for is None
            )
            if free and (best is None or slot.in_flight < best.in_flight):
                best = slot
        return best

    def _pump(self) -> None:
        """Dispatch what can run now, then start instances for what cannot."""
        while self._queue and (slot := self._free_slot()) is not None:
            batch = self._next_batch()
            if not batch:
                break  # a batch is filling up: the batch timer pumps again
            slot.in_flight += 1
            self._spawn(self._run(slot, batch))
        if self._closed:
            return
        load = self._load()
        n = instances_to_start(
            load,
            self.version.scaling,
            min_instances=max(self.min_instances, self._desired),
            now=self._clock(),
            backoff_until=self._backoff_until,
        )
        for _ in range(n):
            self._starting += 1
            self._spawn(self._start_one())
        self._publish(load)

    def _load(self) -> PoolLoad:
        return PoolLoad(
            # Entries whose client left are dropped lazily; counting them is O(1) and errs
            # towards one instance too many, never too few.
            queued=len(self._queue),
            in_flight=sum(s.in_flight for s in self._slots.values()),
            ready=len(self._slots),
            starting=self._starting,
            stopping=self._stopping,
        )

    def _next_batch(self) -> list[_Invocation]:
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()  # its client went away while it waited
        policy = self.version.batching
        if policy.max_batch_size <= 1:
            return [self._queue.popleft()] if self._queue else []
        head = list(itertools.islice(self._queue, policy.max_batch_size + 1))
        # With nothing running, waiting for batch mates only adds latency: at low load each
        # request goes at once; under load, batches fill while the instances are busy.
        idle = not any(s.in_flight for s in self._slots.values())
        take, wake_at = take_batch(
            [i.waiting() for i in head], policy, self._clock(), send_partial=idle
        )
        if take == 0:
            if wake_at is not None and self._batch_timer is None:
                delay = max(0.0, wake_at - self._clock())
                self._batch_timer = asyncio.get_running_loop().call_later(
                    delay, self._on_batch_timer
                )
            return []
        batch = [self._queue.popleft() for _ in range(take)]
        return [i for i in batch if not i.future.done()]

    def _on_batch_timer(self) -> None:
        self._batch_timer = None
        self._pump()

    def _publish(self, load: PoolLoad) -> None:
        instances, queue_depth, in_flight = self._gauges
        instances.set(load.ready)
        queue_depth.set(load.queued)
        in_flight.set(load.in_flight)

    async def _run(self, slot: _Slot, batch: list[_Invocation]) -> None:
        for inv in batch:
            inv.attempts += 1
        self._metrics.batch_size.labels(*self._labels).observe(len(batch))
        try:
            started = self._clock()
            outputs = await asyncio.wait_for(
                slot.instance.infer(_stack(batch), _requests(batch)),
                timeout=self.version.timeout_s,
            )
            # Moving averages feed the admission check: 0.2 weighs the last ~5 calls most.
            self._service_s += 0.2 * ((self._clock() - started) - self._service_s)
            for inv, part in zip(batch, _split(batch, outputs), strict=True):
                if not inv.future.done():
                    cold = slot.ready_at > inv.enqueued_at
                    inv.future.set_result(Result(part, cold, slot.instance.id, len(batch)))
        except asyncio.CancelledError:
            self._fail_all(
                batch, PoolClosed("the model is being removed or the platform is stopping")
            )
            raise
        except Exception as exc:
            self._on_failure(slot, batch, exc)
        finally:
            slot.in_flight -= 1
            slot.last_active = self._clock()
            self._pump()

    def _on_failure(self, slot: _Slot, batch: list[_Invocation], exc: Exception) -> None:
        """What a failed model call means for each request that was in it."""
        if isinstance(exc, TimeoutError):
            # A stuck instance holds a slot forever: replace it. Its other in-flight
            # invocations see InstanceDied and are retried on a fresh instance.
            timeout = self.version.timeout_s
            self._fail_all(batch, InvocationTimeout(
                f"the model did not answer within its timeout of {timeout:g} s"
            ))  # fmt: skip
            slot.killed_for = "timeout"
            slot.instance.kill()
        elif isinstance(exc, ModelError):
            self._fail_all(batch, exc)
        elif isinstance(exc, LimitExceeded):
            # Not retried: the same request would likely take the next instance down too. The
            # instance exits by itself (the worker or the kernel ends it); _watch counts it.
            slot.killed_for = slot.killed_for or exc.reason
            self._fail_all(batch, _limit_error(exc.reason, str(exc)))
        elif isinstance(exc, InstanceDied):
            # Inference has no side effects: back to the head of the queue, in order, once.
            what = str(exc).removeprefix("instance ")
            for inv in reversed(batch):
                if inv.attempts < _MAX_ATTEMPTS and not inv.future.done() and not self._closed:
                    self._queue.appendleft(inv)
                else:
                    self._fail(inv, InstanceCrashed(f"the instance running this request {what}"))
        else:  # a bug must cost these requests, never hang them
            log.error("invocation on %s failed", slot.instance.id, exc_info=exc)
            self._fail_all(batch, InstanceCrashed(f"the invocation failed: {type(exc).__name__}"))

    def _fail_all(self, batch: list[_Invocation], exc: Exception) -> None:
        for inv in batch:
            self._fail(inv, exc)

    @staticmethod
    def _fail(inv: _Invocation, exc: Exception) -> None:
        if not inv.future.done():
            inv.future.set_exception(exc)

    def _instance_spec(self) -> InstanceSpec:
        v = self.version
        return instance_spec(
            v,
            instance_id=f"{v.model}-v{v.version}-{next(self._serial)}-{uuid.uuid4().hex[:6]}",
            store_uri=self._store_uri,
            cache_dir=self._cache_dir,
            env=self._env,
        )

    async def _start_one(self) -> None:
        try:
            instance = await self._backend.start(
                self._instance_spec(), timeout_s=self._start_timeout_s
            )
        except StartError as exc:
            self._starting -= 1
            self._on_start_failed(exc)
            return
        except BaseException:
            self._starting -= 1
            raise
        self._starting -= 1
        if self._closed:
            await instance.stop()
            return
        self._backoff_s = 0.0
        self._failed_starts = 0
        now = self._clock()
        slot = _Slot(instance=instance, ready_at=now, last_active=now)
        self._slots[instance.id] = slot
        self._started.set()
        info = instance.start_info
        self._start_s += 0.2 * (info.total_ms / 1e3 - self._start_s)
        self._metrics.cold_starts.labels(*self._labels, info.path).inc()
        self._metrics.cold_start_seconds.labels(*self._labels, info.path).observe(
            info.total_ms / 1e3
        )
        log.info(
            "started %s in %.0f ms (fetch %.0f, load %.0f, %s)",
            instance.id, info.total_ms, info.fetch_ms, info.load_ms, info.path,
        )  # fmt: skip
        self._spawn(self._watch(slot))
        self._pump()

    def _on_start_failed(self, exc: StartError) -> None:
        self._metrics.start_failures.labels(*self._labels).inc()
        if exc.reason is not None:  # it went over a limit while loading
            self._metrics.instance_exits.labels(*self._labels, exc.reason).inc()
            self._emit_limit_event(exc.reason, instance_id=None)
        self._failed_starts += 1
        first = _BACKOFF_CRASH_S if exc.retryable else _BACKOFF_FIRST_S
        self._backoff_s = min(_BACKOFF_MAX_S, max(first, self._backoff_s * 2))
        self._backoff_until = self._clock() + self._backoff_s
        asyncio.get_running_loop().call_later(self._backoff_s, self._pump)
        log.warning("instance of %s v%s failed to start: %s", *self._labels, exc)
        give_up = not exc.retryable or self._failed_starts >= _MAX_CRASHED_STARTS
        if give_up and not self._slots and not self._starting:
            # Nothing will serve the queue: tell the waiting clients why, now.
            message = f"the model failed to start: {exc}"
            failure = _limit_error(exc.reason, message) if exc.reason else StartFailed(message)
            while self._queue:
                self._fail(self._queue.popleft(), failure)
        self._pump()

    async def _watch(self, slot: _Slot) -> None:
        await slot.instance.wait_closed()
        reason = slot.instance.exit_reason or "unknown"
        if self._slots.pop(slot.instance.id, None) is not None:
            # Gone without being asked to stop: a crash, or our kill after a timeout.
            log.warning("instance %s %s", slot.instance.id, reason)
            kind = slot.instance.limit_exceeded or slot.killed_for or "crashed"
            self._metrics.instance_exits.labels(*self._labels, kind).inc()
            self._emit_limit_event(kind, instance_id=slot.instance.id)
            self._pump()

    def _emit_limit_event(self, kind: str, *, instance_id: str | None) -> None:
        """Tell the platform (its audit log) that an instance went over a limit."""
        v = self.version
        fields: dict[str, Any] = {"model": v.model, "version": v.version, "instance": instance_id}
        if kind == "memory":
            name, fields["limit_mb"] = "instance.memory_exceeded", v.memory_mb
        elif kind == "cpu_limit":
            name, fields["limit_s"] = "instance.cpu_limit_exceeded", v.cpu_limit_s
        else:
            return
        if self._on_event is not None:
            try:
                self._on_event(name, fields)
            except Exception:  # the audit log failing must not stop serving
                log.exception("event hook failed on %s", name)

    async def _stop(self, slot: _Slot, reason: str) -> None:
        self._stopping += 1
        try:
            await slot.instance.stop()
        finally:
            self._stopping -= 1
            self._metrics.instance_exits.labels(*self._labels, reason).inc()
            log.info("stopped %s (%s)", slot.instance.id, reason)
            self._pump()

    # -- the clock-driven part ---------------------------------------------------------------

    def _tick(self) -> None:
        now = self._clock()
        # Invocations that waited too long for a slot: refuse them now rather than hang.
        while self._queue and (
            self._queue[0].future.done()
            or now - self._queue[0].enqueued_at >= self._queue_timeout_s
        ):
            inv = self._queue.popleft()
            self._fail(inv, QueueTimeout(
                f"no instance became free within {self._queue_timeout_s:g} s"
            ))  # fmt: skip
        self._autoscale(now)
        loads = [InstanceLoad(sid, s.in_flight, s.last_active) for sid, s in self._slots.items()]
        for sid in instances_to_stop(
            loads,
            self.version.scaling,
            min_instances=max(self.min_instances, self._desired),
            queued=len(self._queue),
            now=now,
        ):
            slot = self._slots.pop(sid)
            self._spawn(self._stop(slot, "idle"))
        self._pump()

    def _autoscale(self, now: float) -> None:
        """Sample demand and ask the windowed autoscaler for a size; the pool starts up to it
        and stops idle instances only above it."""
        policy = self.version.scaling
        demand = len(self._queue) + sum(s.in_flight for s in self._slots.values())
        self._samples.append(Sample(now, float(demand)))
        while self._samples and self._samples[0].time < now - policy.stable_window_s:
            self._samples.popleft()
        decision = decide(
            self._samples,
            policy,
            ready=len(self._slots),
            min_instances=self.min_instances,
            state=self._autoscaler,
            now=now,
        )
        self._autoscaler = decision.state
        self._desired = decision.desired
        self._metrics.desired_instances.labels(*self._labels).set(decision.desired)
        self._metrics.panic.labels(*self._labels).set(1 if decision.panicking else 0)

    async def _tick_loop(self) -> None:
        # Tick often enough to honour short idle timeouts (tests use 1 s) to within ~10 %.
        period = min(1.0, max(0.05, self.version.scaling.idle_timeout_s / 10))
        while True:
            # Decide faster while panicking: a spike is when seconds matter.
            panicking = self._autoscaler.panic_until > self._clock()
            await asyncio.sleep(min(period, 0.25) if panicking else period)
            try:
                self._tick()
            except Exception:  # a bug here must not stop scaling for good
                log.exception("pool tick of %s v%s failed", *self._labels)
