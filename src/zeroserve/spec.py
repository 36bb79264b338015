"""Model, version, tensor and scaling specs: the one source of truth for what a deployment is.

A *version* is immutable: once the registry has stored a `VersionSpec` it is never edited;
a change is a new version. Everything a user can set is validated here, with messages that
name the bad value.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DATATYPES",
    "MODEL_NAME_PATTERN",
    "RUNTIMES",
    "SECRET_NAME_PATTERN",
    "ArtifactRef",
    "BatchingPolicy",
    "CachePolicy",
    "DeployRequest",
    "JobPolicy",
    "PrewarmRequest",
    "RuntimeName",
    "ScalingPolicy",
    "Signature",
    "TensorSpec",
    "TrafficSplit",
    "VersionSpec",
    "WarmWindow",
    "infer_runtime",
]

RuntimeName = Literal["onnx", "sklearn", "python", "torch"]
RUNTIMES: tuple[RuntimeName, ...] = ("onnx", "sklearn", "python", "torch")

# Open Inference Protocol V2 tensor datatypes.
# See: https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md
DATATYPES: tuple[str, ...] = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
)  # fmt: skip

# Lower-case DNS-label-like names: they appear in URLs, metric labels and file names.
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
# Secret names are environment variable names.
SECRET_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,63}$"
_MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)

# File suffix -> runtime, for `zeroserve deploy NAME PATH` without --runtime.
_SUFFIX_RUNTIME: dict[str, RuntimeName] = {
    ".onnx": "onnx",
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".pickle": "sklearn",
    ".py": "python",
    ".pt": "torch",
    ".pth": "torch",
    ".torchscript": "torch",
}


def infer_runtime(filename: str) -> RuntimeName | None:
    """The runtime implied by an artifact's file name, or None when the suffix says nothing."""
    return _SUFFIX_RUNTIME.get(PurePosixPath(filename).suffix.lower())


def check_model_name(name: str) -> str:
    if not _MODEL_NAME_RE.match(name):
        raise ValueError(
            f"model name {name!r} is invalid: use 1-63 characters of a-z, 0-9, '_', '.', '-',"
            " starting with a letter or digit"
        )
    return name


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_DAY = r"(mon|tue|wed|thu|fri|sat|sun)"
_DAYS_PATTERN = rf"^(\*|{_DAY}(-{_DAY})?(,{_DAY}(-{_DAY})?)*)$"
_HHMM_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class WarmWindow(_Frozen):
    """Keep `min_instances` warm on `days` from `start` to `end` (platform local time), for
    predictable peaks. An `end` before `start` runs past midnight."""

    days: str = Field("*", pattern=_DAYS_PATTERN, description="e.g. mon-fri, sat,sun or *")
    start: str = Field(pattern=_HHMM_PATTERN, description="HH:MM")
    end: str = Field(pattern=_HHMM_PATTERN, description="HH:MM")
    min_instances: int = Field(ge=1, le=1024)


class ScalingPolicy(_Frozen):
    """How many instances a version may have, and how busy each may be."""

    # Instances kept running even with no traffic (the warm pool). 0 = scale to zero.
    min_instances: int = Field(0, ge=0, le=1024)
    # Hard ceiling; the pool never runs more, also while instances are starting.
    max_instances: int = Field(4, ge=1, le=1024)
    # In-flight invocations one instance may hold (Knative's containerConcurrency).
    concurrency: int = Field(4, ge=1, le=1024)
    # An instance with nothing in flight for this long is stopped (down to min_instances).
    idle_timeout_s: float = Field(300.0, gt=0, le=7 * 24 * 3600)
    # Scheduled warm pools, e.g. [{days: mon-fri, start: "08:00", end: "18:00", min_instances: 2}].
    warm: list[WarmWindow] = Field(default_factory=list)
    # Invocations that may wait for an instance; past it new ones get 429 with Retry-After,
    # so memory stays bounded under overload.
    max_queue: int = Field(1024, ge=1, le=1_000_000)
    # -- the windowed autoscaler (Knative's KPA; see scaling/autoscaler.py) --
    # Share of `concurrency` each instance is sized for: 0.7 leaves headroom for bursts.
    target_utilization: float = Field(0.7, gt=0, le=1)
    # Demand is averaged over this window for steady scaling ...
    stable_window_s: float = Field(60.0, ge=1, le=3600)
    # ... and over this shorter one to react to spikes (panic mode).
    panic_window_s: float = Field(6.0, ge=0.1, le=600)
    # Panic when the short window wants this many times the ready instances; while panicking
    # the pool only scales up (until a stable window has passed without a new panic).
    panic_threshold: float = Field(2.0, gt=1, le=100)
    # At most this many times the ready instances per decision (from zero: at least 1 step).
    max_scale_up_rate: float = Field(1000.0, gt=1)
    # At most ready / this many instances fewer per decision.
    max_scale_down_rate: float = Field(2.0, gt=1)
    # A lower recommendation must hold this long before it is acted on.
    scale_down_delay_s: float = Field(0.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _max_at_least_min(self) -> ScalingPolicy:
        if self.max_instances < self.min_instances:
            raise ValueError(
                f"max_instances = {self.max_instances} must be >= min_instances"
                f" = {self.min_instances}"
            )
        if self.panic_window_s > self.stable_window_s:
            raise ValueError(
                f"panic_window_s = {self.panic_window_s} must be <= stable_window_s"
                f" = {self.stable_window_s}"
            )
        for w in self.warm:
            if w.min_instances > self.max_instances:
                raise ValueError(
                    f"warm window {w.days} {w.start}-{w.end}: min_instances = {w.min_instances}"
                    f" must be <= max_instances = {self.max_instances}"
                )
        return self


class BatchingPolicy(_Frozen):
    """Dynamic batching (as Triton's dynamic batcher, Ray Serve's @serve.batch): queued
    requests of one version are stacked along the first dimension into one call to the model,
    and the results are split back. Off by default (max_batch_size 1)."""

    # Rows (sum of the requests' first dimensions) in one batch; a larger request runs alone.
    max_batch_size: int = Field(1, ge=1, le=65536)
    # How long the oldest queued request may wait for others to fill its batch.
    max_batch_delay_ms: float = Field(2.0, ge=0, le=10_000)
    # Batch sizes the model runs best at (as Triton's preferred_batch_size): a batch that
    # reaches one goes at once, without waiting out the delay for more.
    preferred_batch_sizes: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _preferred_within_max(self) -> BatchingPolicy:
        for size in self.preferred_batch_sizes:
            if not 1 <= size <= self.max_batch_size:
                raise ValueError(
                    f"preferred batch size {size} must be between 1 and max_batch_size"
                    f" = {self.max_batch_size}"
                )
        return self


class CachePolicy(_Frozen):
    """Response cache for synchronous inference, opt-in per version: a request whose inputs
    equal an earlier one's (same tenant, model, version) gets the stored outputs without
    touching an instance. Only for deterministic models."""

    ttl_s: float = Field(3600.0, gt=0, le=30 * 24 * 3600)
    max_entries: int = Field(100_000, ge=1, le=10_000_000)


class JobPolicy(_Frozen):
    """How asynchronous jobs of a version are retried and kept."""

    # Attempts before a job goes to the dead-letter queue (1 = no retry).
    max_attempts: int = Field(3, ge=1, le=100)
    # Backoff before attempt n+1: uniform in [0, min(max, base * 2**(n-1))] (full jitter).
    backoff_base_s: float = Field(1.0, ge=0, le=3600)
    backoff_max_s: float = Field(60.0, ge=0, le=24 * 3600)
    # How long a finished job (and its result) can be read.
    result_ttl_s: float = Field(24 * 3600.0, gt=0, le=365 * 24 * 3600)


class TensorSpec(_Frozen):
    """One named input or output of a model. A dimension of -1 accepts any size."""

    name: str
    # None: the runtime cannot tell (TorchScript, an undeclared Python model): any datatype.
    datatype: str | None = None
    # None: any shape.
    shape: list[int] | None = None

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, v: str | None) -> str | None:
        if v is not None and v not in DATATYPES:
            raise ValueError(f"datatype {v!r} is not one of {', '.join(DATATYPES)}")
        return v


class Signature(_Frozen):
    """What a loaded model takes and returns; found by loading it once at deploy time."""

    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    # False when the model did not declare its inputs: any named tensors are passed through.
    inputs_known: bool = True


class ArtifactRef(_Frozen):
    """Where the artifact comes from: a digest of an upload, or a URI the platform fetches."""

    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    uri: str | None = None
    filename: str | None = Field(None, max_length=255)

    @model_validator(mode="after")
    def _one_source(self) -> ArtifactRef:
        if (self.sha256 is None) == (self.uri is None):
            raise ValueError("artifact needs exactly one of 'sha256' (an upload) or 'uri'")
        return self


class DeployRequest(_Frozen):
    """What `zeroserve deploy` (or POST /api/models/{name}/versions) asks for."""

    artifact: ArtifactRef
    runtime: RuntimeName | None = None
    # Pickled formats (sklearn/joblib) run code when loaded; the deployer must vouch for them.
    trust: bool = False
    scaling: ScalingPolicy = Field(default_factory=ScalingPolicy)  # type: ignore[arg-type]
    # Wall-clock bound on one invocation on an instance; past it the client gets 504.
    timeout_s: float = Field(30.0, gt=0, le=3600)
    # Memory limit of each instance (RLIMIT_DATA: heap and private mappings), None for none.
    memory_mb: int | None = Field(None, ge=64, le=1024 * 1024)
    # Python runtime: the class to instantiate; default is the one class with load()/predict().
    python_class: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Keep a snapshot template (model loaded, one warm-up prediction done) to fork instances
    # from in milliseconds; it costs its memory, within `zeroserve up --snapshot-memory`.
    snapshot: bool = False
    batching: BatchingPolicy = Field(default_factory=BatchingPolicy)  # type: ignore[arg-type]
    cache: CachePolicy | None = None
    jobs: JobPolicy = Field(default_factory=JobPolicy)  # type: ignore[arg-type]
    # CPU seconds one instance may use over its life; past it, it is replaced. None: no limit.
    cpu_limit_s: float | None = Field(None, gt=0, le=7 * 24 * 3600)
    # Secrets (by name, of the deploying tenant) put in the instances' environment; nothing
    # else of the platform's environment reaches an instance.
    secrets: list[str] = Field(default_factory=list, max_length=64)

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.fullmatch(SECRET_NAME_PATTERN, name):
                raise ValueError(f"secret name {name!r} must match {SECRET_NAME_PATTERN}")
        return sorted(set(v))


class VersionSpec(_Frozen):
    """An immutable version as stored in the registry."""

    model: str
    version: int = Field(ge=1)
    runtime: RuntimeName
    artifact_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    artifact_filename: str
    artifact_size: int = Field(ge=0)
    trust: bool
    scaling: ScalingPolicy
    timeout_s: float
    memory_mb: int | None
    python_class: str | None
    signature: Signature
    created_at: float
    snapshot: bool = False
    batching: BatchingPolicy = Field(default_factory=BatchingPolicy)  # type: ignore[arg-type]
    cache: CachePolicy | None = None
    jobs: JobPolicy = Field(default_factory=JobPolicy)  # type: ignore[arg-type]
    cpu_limit_s: float | None = None
    secrets: list[str] = Field(default_factory=list)
    # The tenant that owns the model (set from the deploying key, never by the request).
    tenant: str = "default"

    def options(self) -> dict[str, Any]:
        """Runtime options that travel to the instance."""
        return runtime_options(self.python_class, self.artifact_filename)


def runtime_options(python_class: str | None, filename: str) -> dict[str, Any]:
    archive = filename.lower().endswith((".tar", ".tar.gz", ".tgz", ".zip"))
    return {"python_class": python_class, "archive": archive}


class PrewarmRequest(_Frozen):
    """`zeroserve prewarm`: start instances ahead of a predictable peak."""

    # Instances to start now (at most the version's max_instances).
    instances: int = Field(1, ge=1, le=1024)
    # How long they are kept; after that the idle timeout applies as usual.
    duration_s: float = Field(600.0, gt=0, le=7 * 24 * 3600)


class TrafficSplit(_Frozen):
    """Share of a model's unversioned requests that go to one version."""

    version: int = Field(ge=1)
    percent: int = Field(ge=0, le=100)
