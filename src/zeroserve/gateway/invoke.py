"""The one path every protocol's inference takes after decoding: route, validate, run in the
pool, meter. Protocol modules only decode and encode."""

from __future__ import annotations

import time
from dataclasses import dataclass

from zeroserve.gateway.errors import ApiError, to_api_error
from zeroserve.metering.audit_trail import LOCAL, Actor
from zeroserve.platform import Platform
from zeroserve.scaling.pool import Result
from zeroserve.spec import VersionSpec
from zeroserve.tensors import Tensors

__all__ = ["DEADLINE_HEADER", "Metered", "parse_deadline", "parse_version", "result_headers"]


DEADLINE_HEADER = "x-zeroserve-deadline-ms"


def parse_deadline(raw: str | None) -> float | None:
    """`x-zeroserve-deadline-ms`: how long the client will wait for an instance, in ms."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3_600_000:
        raise ApiError(400, f"{DEADLINE_HEADER} {raw!r} must be a number of ms in (0, 3600000]")
    return value / 1e3


def parse_version(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(404, f"version {raw!r} not found: versions are positive integers")
    return int(raw)


@dataclass
class Metered:
    """Counts and times one inference request under its model, version and protocol."""

    platform: Platform
    protocol: str
    model: str = ""
    version: str = ""
    status: int = 200
    started: float = 0.0
    actor: Actor = LOCAL
    input_data: bytes = b""
    output_data: bytes = b""

    def __post_init__(self) -> None:
        self.started = time.perf_counter()

    def route(self, name: str, version: int | None) -> VersionSpec:
        self.model = name
        spec = self.platform.route(name, version)
        self.version = str(spec.version)
        return spec

    async def infer(
        self,
        spec: VersionSpec,
        inputs: Tensors,
        deadline_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> Result:
        context = {"idempotency_key": idempotency_key} if idempotency_key else None
        return await self.platform.infer(
            spec, inputs, deadline_s, tenant=self.actor.tenant, cacheable=True, context=context
        )

    def fail(self, exc: Exception) -> ApiError:
        err = to_api_error(exc)
        self.status = err.status
        return err

    def done(self) -> None:
        if not self.model or not self.version:
            return  # unknown model: no label set to grow
        seconds = time.perf_counter() - self.started
        self.platform.metrics.observe_request(
            self.model, self.version, self.protocol, self.status, seconds
        )
        self.platform.audit.invocation(
            self.actor,
            model=self.model,
            version=self.version,
            status=self.status,
            latency_ms=seconds * 1e3,
            input_data=self.input_data,
            output_data=self.output_data,
        )


def result_headers(result: Result) -> dict[str, str]:
    """What every inference response says about how it was served."""
    headers = {
        "x-zeroserve-cold-start": "true" if result.cold else "false",
        "x-zeroserve-batch-size": str(result.batch_size),
    }
    if result.cache is not None:
        headers["x-zeroserve-cache"] = result.cache
    return headers
