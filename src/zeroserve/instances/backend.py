"""The backend interface: where instances run.

The pool talks only to `Backend.start()` and the returned `Instance`: no pid, no shared
memory, no local file. A `local` backend runs processes on this machine; a `ray` backend can
run the same worker loop in actors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from zeroserve.instances.spec import InstanceSpec
from zeroserve.spec import Signature
from zeroserve.tensors import Tensors

__all__ = [
    "Backend",
    "Instance",
    "InstanceDied",
    "LimitExceeded",
    "ModelError",
    "StartError",
    "StartInfo",
]


class StartError(Exception):
    """An instance could not start.

    `retryable` is False when the model itself failed to load (the same load would fail again)
    and True when the instance died or hung while loading (a crash, a kill, a timeout).
    """

    def __init__(self, message: str, *, retryable: bool, reason: str | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        # "memory" or "cpu_limit" when the instance went over one of its limits while loading.
        self.reason = reason


class InstanceDied(Exception):
    """The instance went away while a request was in flight on it."""


class LimitExceeded(InstanceDied):
    """The instance went over its memory or CPU-time limit (and is gone, or going).

    `reason` is "memory" or "cpu_limit"; the message names the limit. Unlike a crash, the
    requests it was running are not retried: they would likely take the next one down too.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ModelError(Exception):
    """The model's predict raised; the message is the model's own."""


@dataclass(frozen=True)
class StartInfo:
    # Where the time of a cold start went, in milliseconds.
    total_ms: float
    fetch_ms: float
    load_ms: float
    path: str  # how the instance was started: "spawn" (a new interpreter), later "fork", ...


class Instance(Protocol):
    id: str
    signature: Signature
    start_info: StartInfo

    @property
    def alive(self) -> bool: ...

    @property
    def exit_reason(self) -> str | None:
        """Why the instance is gone (e.g. "killed by SIGKILL"), None while it runs."""
        ...

    @property
    def limit_exceeded(self) -> str | None:
        """ "memory" or "cpu_limit" when it exited for going over that limit, else None."""
        ...

    async def infer(self, inputs: Tensors, requests: list[dict[str, Any]] | None = None) -> Tensors:
        """Run one batch; raises ModelError or InstanceDied. `requests` describes the batch's
        requests in order (rows, and the job id and idempotency key where there is one) for
        a Python model whose predict takes it."""
        ...

    async def wait_closed(self) -> None:
        """Return once the instance has exited, for whatever reason."""
        ...

    async def stop(self, grace_s: float = 2.0) -> None:
        """Let in-flight work finish (up to grace_s), then make sure it is gone."""
        ...

    def kill(self) -> None:
        """End it now (a stuck instance)."""
        ...


class Backend(Protocol):
    name: str

    async def start(self, spec: InstanceSpec, *, timeout_s: float) -> Instance: ...

    async def warm_up(self) -> None:
        """Get ready to start instances fast (e.g. start the fork server)."""
        ...

    async def prepare(self, spec: InstanceSpec) -> None:
        """Make the snapshot template for a version with `snapshot` on, if supported."""
        ...

    async def forget_model(self, model: str) -> None:
        """The model was removed: drop whatever the backend keeps for it (templates)."""
        ...

    def template_sizes(self) -> dict[str, int]:
        """Memory (bytes, PSS) of each live snapshot template, by model:version:sha256."""
        ...

    async def close(self) -> None: ...
