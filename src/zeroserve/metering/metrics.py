"""The platform's Prometheus metrics, on a registry of its own (not the process global), so
two platforms in one process (tests) never share counters."""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

# Latency buckets from 1 ms to 30 s: warm inference sits in the first few, cold starts and
# slow models in the tail.
_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._request_children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        r = self.registry
        self.requests = Counter(
            "zeroserve_requests",
            "Inference requests answered, by model, version, protocol and HTTP status.",
            ["model", "version", "protocol", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "zeroserve_request_duration_seconds",
            "Time from request received to response ready, gateway side.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cold_starts = Counter(
            "zeroserve_cold_starts",
            "Instances started, by how they were started (path).",
            ["model", "version", "path"],
            registry=r,
        )
        self.cold_start_seconds = Histogram(
            "zeroserve_cold_start_seconds",
            "Time to start an instance and load its model, by start path.",
            ["model", "version", "path"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.start_failures = Counter(
            "zeroserve_instance_start_failures",
            "Instances that failed to start (model failed to load, died while loading).",
            ["model", "version"],
            registry=r,
        )
        self.instance_exits = Counter(
            "zeroserve_instance_exits",
            "Instances gone, by reason: idle (scaled down), crashed, timeout, shutdown,"
            " memory (over memory_mb), cpu_limit (over cpu_limit_s).",
            ["model", "version", "reason"],
            registry=r,
        )
        self.instances = Gauge(
            "zeroserve_instances",
            "Live instances (loaded and serving).",
            ["model", "version"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "zeroserve_queue_depth",
            "Invocations waiting for an instance.",
            ["model", "version"],
            registry=r,
        )
        self.in_flight = Gauge(
            "zeroserve_in_flight",
            "Invocations running on instances.",
            ["model", "version"],
            registry=r,
        )

        self.desired_instances = Gauge(
            "zeroserve_desired_instances",
            "What the windowed autoscaler wants for the version now.",
            ["model", "version"],
            registry=r,
        )
        self.panic = Gauge(
            "zeroserve_autoscaler_panic",
            "1 while the version's autoscaler is in panic mode (scaling up only).",
            ["model", "version"],
            registry=r,
        )
        self.batch_size = Histogram(
            "zeroserve_batch_size",
            "Requests per model call (dynamic batching; 1 when off).",
            ["model", "version"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.snapshot_memory = Gauge(
            "zeroserve_snapshot_memory_bytes",
            "Memory (PSS) held by snapshot templates: loaded models kept to fork instances"
            " from, within the --snapshot-memory budget. Not free, so reported.",
            ["model", "version"],
            registry=r,
        )

        self.jobs = Counter(
            "zeroserve_jobs",
            "Asynchronous job events: submitted, succeeded, retried, dead, cancelled.",
            ["model", "event"],
            registry=r,
        )
        self.job_queue_seconds = Histogram(
            "zeroserve_job_queue_seconds",
            "Time from a job's submission to the start of its first attempt.",
            ["model"],
            buckets=(*_LATENCY_BUCKETS, 60.0, 300.0, 900.0, 3600.0),
            registry=r,
        )
        self.job_backlog = Gauge(
            "zeroserve_job_backlog",
            "Jobs waiting to run (queued, or failed and waiting for a retry).",
            ["model", "version"],
            registry=r,
        )
        self.deliveries = Counter(
            "zeroserve_job_deliveries",
            "Webhook posts and trigger output writes, by kind and result (ok, retry, failed).",
            ["kind", "result"],
            registry=r,
        )
        self.cache = Counter(
            "zeroserve_response_cache",
            "Response cache lookups for synchronous inference, by result (hit, miss).",
            ["model", "version", "result"],
            registry=r,
        )

    def set_snapshot_memory(self, sizes: dict[tuple[str, str], int]) -> None:
        self.snapshot_memory.clear()
        for (model, version), size in sizes.items():
            self.snapshot_memory.labels(model, version).set(size)

    def observe_request(
        self, model: str, version: str, protocol: str, status: int, seconds: float
    ) -> None:
        """Count and time one request (children cached: this runs on every request)."""
        key = (model, version, protocol, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(model, version, protocol, str(status)),
                self.request_seconds.labels(model, version),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def forget(self, model: str, version: str) -> None:
        """Drop a removed version's gauges so /metrics stops reporting it."""
        self._request_children = {
            k: v for k, v in self._request_children.items() if k[:2] != (model, version)
        }
        gauges = (
            self.instances,
            self.queue_depth,
            self.in_flight,
            self.desired_instances,
            self.panic,
        )
        for gauge in gauges:
            with contextlib.suppress(KeyError):
                gauge.remove(model, version)
