"""The platform core: registry + artifact store + pools, shared by every protocol.

The gateway translates HTTP into calls on `Platform` and exceptions back into statuses;
nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from zeroserve.artifacts import ArtifactStore
from zeroserve.artifacts.owners import ArtifactOwners
from zeroserve.instances import Backend, InstanceSpec, LocalBackend, StartError
from zeroserve.instances.forking import ForkServerBackend
from zeroserve.metering import Metrics
from zeroserve.metering.audit_trail import LOCAL, Actor, AuditTrail
from zeroserve.registry import ModelRecord, Registry, SqliteRegistry
from zeroserve.routing import pick_version
from zeroserve.routing.cache import ResponseCache, input_digest
from zeroserve.scaling import Pool
from zeroserve.scaling.pool import Result, instance_spec
from zeroserve.scaling.warm import warm_target
from zeroserve.security.secrets import SecretStore, key_source
from zeroserve.settings import Settings
from zeroserve.spec import (
    DeployRequest,
    Signature,
    TrafficSplit,
    VersionSpec,
    check_model_name,
    infer_runtime,
    runtime_options,
)
from zeroserve.tensors import Tensors

__all__ = ["DeployError", "NameTaken", "NotFound", "Platform"]

log = logging.getLogger("zeroserve.platform")

# How often warm schedules and prewarm floors are re-evaluated.
_WARM_TICK_S = 1.0


class NotFound(Exception):
    """An unknown model or version."""


class DeployError(Exception):
    """A deployment that cannot be made; the message says what to change."""


class NameTaken(DeployError):
    """The model name belongs to another tenant (409; which one is not said)."""


@dataclass(frozen=True)
class _Key:
    model: str
    version: int


class Platform:
    def __init__(
        self,
        settings: Settings,
        *,
        registry: Registry | None = None,
        backend: Backend | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.registry: Registry = registry or SqliteRegistry(settings.registry_path)
        self.store = ArtifactStore(settings.artifact_store_uri, settings.state_dir / "staging")
        self.backend: Backend = backend or _default_backend(settings)
        self.metrics = metrics or Metrics()
        self._models: dict[str, ModelRecord] = {}
        self._pools: dict[_Key, Pool] = {}
        self._deploy_lock = asyncio.Lock()
        self._prewarm: dict[_Key, tuple[int, float]] = {}  # floor, until (monotonic)
        self._backlog_floor: dict[_Key, int] = {}  # instances wanted for queued jobs
        self.cache = ResponseCache()
        self.audit = AuditTrail(settings.state_dir / "audit.db")
        self.owners = ArtifactOwners(settings.state_dir / "artifact-owners.db")
        self.secrets = _secret_store(settings)
        self._warm_task: asyncio.Task[None] | None = None
        self.started_at = time.time()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.audit.start()
        await self.backend.warm_up()
        for record in self.registry.list_models():
            self._models[record.name] = record
            self._apply_warm_pool(record)
            for spec in record.versions:
                await self._prepare_snapshot(record, spec)
        self._warm_task = asyncio.get_running_loop().create_task(self._warm_loop())

    async def _prepare_snapshot(self, record: ModelRecord, spec: VersionSpec) -> None:
        routed = {t.version for t in record.traffic if t.percent > 0}
        if spec.snapshot and spec.version in routed:
            await self.backend.prepare(
                instance_spec(
                    spec,
                    instance_id=f"{spec.model}-v{spec.version}-template",
                    store_uri=self.store.root_uri,
                    cache_dir=str(self.settings.cache_dir),
                )
            )

    async def close(self) -> None:
        if self._warm_task is not None:
            self._warm_task.cancel()
        pools = list(self._pools.values())
        self._pools.clear()
        await asyncio.gather(*(p.close() for p in pools), return_exceptions=True)
        await self.backend.close()
        self.registry.close()
        await self.audit.close()
        self.owners.close()
        if self.secrets is not None:
            self.secrets.close()

    # -- models ------------------------------------------------------------------------------

    def models(self) -> list[ModelRecord]:
        return sorted(self._models.values(), key=lambda r: r.name)

    def model(self, name: str) -> ModelRecord:
        record = self._models.get(name)
        if record is None:
            raise NotFound(f"model {name!r} not found")
        return record

    def version(self, name: str, version: int | None) -> VersionSpec:
        record = self.model(name)
        if version is None:
            # The version most of the traffic goes to stands for the model (metadata).
            main = max(record.traffic, key=lambda t: t.percent, default=None)
            found = record.version(main.version) if main else None
            return found or record.latest
        spec = record.version(version)
        if spec is None:
            known = ", ".join(str(v.version) for v in record.versions)
            raise NotFound(f"model {name!r} has no version {version} (versions: {known})")
        return spec

    async def upload(self, chunks: AsyncIterator[bytes], actor: Actor = LOCAL) -> tuple[str, int]:
        digest, size = await self.store.put_stream(
            chunks, max_bytes=self.settings.max_artifact_bytes
        )
        self.owners.add(digest, actor.tenant)
        return digest, size

    async def deploy(self, name: str, request: DeployRequest, actor: Actor = LOCAL) -> VersionSpec:
        try:
            check_model_name(name)
        except ValueError as exc:
            raise DeployError(str(exc)) from None
        existing = self._models.get(name)
        if existing is not None and existing.tenant != actor.tenant:
            raise NameTaken(f"the model name {name!r} is taken; choose another")
        self._check_secrets(request.secrets, actor.tenant)
        digest, size, filename = await self._resolve_artifact(request, actor)
        runtime = request.runtime or infer_runtime(filename)
        if runtime is None:
            raise DeployError(
                f"cannot tell the runtime from the file name {filename!r};"
                " pass runtime (onnx, sklearn, python or torch)"
            )
        if runtime == "sklearn" and not request.trust:
            raise DeployError(
                "sklearn artifacts are pickles, and loading a pickle runs the code inside it;"
                " deploy with --trust (trust: true) only if you trust where the file came from"
            )
        env = self._secret_env(request.secrets, actor.tenant)
        signature = await self._inspect(name, runtime, digest, filename, request, env)
        async with self._deploy_lock:
            spec = VersionSpec(
                model=name,
                version=self.registry.next_version(name),
                runtime=runtime,
                artifact_sha256=digest,
                artifact_filename=filename,
                artifact_size=size,
                trust=request.trust,
                scaling=request.scaling,
                timeout_s=request.timeout_s,
                memory_mb=request.memory_mb,
                python_class=request.python_class,
                signature=signature,
                created_at=time.time(),
                snapshot=request.snapshot,
                batching=request.batching,
                cache=request.cache,
                jobs=request.jobs,
                cpu_limit_s=request.cpu_limit_s,
                secrets=request.secrets,
                tenant=actor.tenant,
            )
            self.registry.add_version(spec)
            record = self.registry.get(name)
            assert record is not None
            self._models[name] = record
        self._apply_warm_pool(record)
        await self._prepare_snapshot(record, spec)
        log.info("deployed %s v%d (%s, sha256:%s)", name, spec.version, runtime, digest[:12])
        detail = {"version": spec.version, "runtime": runtime, "sha256": digest}
        await asyncio.to_thread(self.audit.record, actor, "model.deploy", name, detail)
        if spec.trust:
            # Who vouched for a pickle is part of the record (issue 6).
            trust = {"version": spec.version, "sha256": digest, "runtime": runtime}
            await asyncio.to_thread(self.audit.record, actor, "model.trust", name, trust)
        return spec

    def _check_secrets(self, names: list[str], tenant: str) -> None:
        if not names:
            return
        if self.secrets is None:
            raise DeployError(
                "this version names secrets, but the platform has no secrets key: start it with"
                " ZEROSERVE_SECRETS_KEY or ZEROSERVE_SECRETS_KEY_FILE"
            )
        missing = sorted(set(names) - set(self.secrets.names(tenant)))
        if missing:
            raise DeployError(f"no secret named {', '.join(missing)}; set it first")

    def instance_env(self, spec: VersionSpec) -> dict[str, str]:
        """The secrets a version's instances get in their environment (and nothing else)."""
        return self._secret_env(spec.secrets, spec.tenant)

    def _secret_env(self, names: list[str], tenant: str) -> dict[str, str]:
        if not names or self.secrets is None:
            return {}
        return {n: self.secrets.get(tenant, n).reveal() for n in names}

    async def _resolve_artifact(self, request: DeployRequest, actor: Actor) -> tuple[str, int, str]:
        ref = request.artifact
        if ref.sha256 is not None:
            # Another tenant's artifact is answered as a missing one: digests do not leak.
            if not self.store.exists(ref.sha256) or not self.owners.may_use(
                ref.sha256, actor.tenant
            ):
                raise DeployError(
                    f"artifact sha256:{ref.sha256} is not in the store; upload it first"
                    " (PUT /api/artifacts)"
                )
            self.owners.add(ref.sha256, actor.tenant)
            return ref.sha256, self.store.size(ref.sha256), ref.filename or ref.sha256[:12]
        assert ref.uri is not None
        # ArtifactError propagates: the gateway answers 413 for an oversized one, else 422.
        digest, size = await asyncio.to_thread(
            self.store.put_uri, ref.uri, max_bytes=self.settings.max_artifact_bytes
        )
        self.owners.add(digest, actor.tenant)
        return digest, size, ref.filename or ref.uri.rstrip("/").rsplit("/", 1)[-1]

    async def _inspect(
        self,
        name: str,
        runtime: str,
        digest: str,
        filename: str,
        request: DeployRequest,
        env: dict[str, str],
    ) -> Signature:
        """Load the model once in a throwaway instance: a model that cannot load is refused
        at deploy time, and its signature (inputs, outputs) is recorded with the version."""
        spec = InstanceSpec(
            instance_id=f"{name}-inspect-{digest[:8]}",
            model=name,
            version=0,
            runtime=runtime,
            artifact_sha256=digest,
            store_uri=self.store.root_uri,
            cache_dir=str(self.settings.cache_dir),
            concurrency=1,
            memory_mb=request.memory_mb,
            options=runtime_options(request.python_class, filename),
            env=env,
            cpu_limit_s=request.cpu_limit_s,
        )
        try:
            instance = await self.backend.start(spec, timeout_s=self.settings.start_timeout_s)
        except StartError as exc:
            raise DeployError(f"the model failed to load: {exc}") from None
        try:
            return instance.signature
        finally:
            await instance.stop()

    def set_traffic(
        self, name: str, traffic: list[TrafficSplit], actor: Actor = LOCAL
    ) -> ModelRecord:
        self.model(name)
        record = self.registry.set_traffic(name, traffic)
        self._models[name] = record
        self._apply_warm_pool(record)
        split = {"traffic": [t.model_dump() for t in traffic]}
        self.audit.record(actor, "model.traffic", name, split)
        return record

    async def remove(self, name: str, actor: Actor = LOCAL) -> None:
        self.model(name)
        await asyncio.to_thread(self.audit.record, actor, "model.delete", name)
        self._models.pop(name, None)
        doomed = [k for k in self._pools if k.model == name]
        pools = [self._pools.pop(k) for k in doomed]
        await asyncio.gather(*(p.close() for p in pools), return_exceptions=True)
        await self.backend.forget_model(name)
        self.cache.drop_model(name)
        self.registry.delete(name)
        log.info("removed %s", name)

    # -- invocations -------------------------------------------------------------------------

    def route(self, name: str, version: int | None) -> VersionSpec:
        """The version that serves this request: the one asked for, or one by traffic split."""
        if version is not None:
            return self.version(name, version)
        record = self.model(name)
        chosen = pick_version(record.traffic, random.random())
        spec = record.version(chosen)
        assert spec is not None, "traffic points at a version the registry holds"
        return spec

    async def infer(
        self,
        spec: VersionSpec,
        inputs: Tensors,
        deadline_s: float | None = None,
        *,
        tenant: str = "default",
        cacheable: bool = False,
        context: dict[str, Any] | None = None,
    ) -> Result:
        """Run one invocation; with `cacheable` and a cache policy on the version, a repeat
        of an earlier request's inputs is answered from the response cache."""
        policy = spec.cache if cacheable else None
        if policy is None:
            return await self._pool(spec).infer(inputs, deadline_s, context)
        key = (spec.model, spec.version)
        digest = input_digest(tenant, spec.model, spec.version, inputs)
        hit = self.cache.get(key, digest)
        counter = self.metrics.cache
        if hit is not None:
            counter.labels(spec.model, str(spec.version), "hit").inc()
            return Result(hit, cold=False, instance_id="", batch_size=0, cache="hit")
        counter.labels(spec.model, str(spec.version), "miss").inc()
        result = await self._pool(spec).infer(inputs, deadline_s, context)
        self.cache.put(key, policy, digest, result.outputs)
        return replace(result, cache="miss")

    def _pool(self, spec: VersionSpec) -> Pool:
        key = _Key(spec.model, spec.version)
        pool = self._pools.get(key)
        if pool is None:
            record = self._models.get(spec.model)
            pool = Pool(
                spec,
                backend=self.backend,
                metrics=self.metrics,
                store_uri=self.store.root_uri,
                cache_dir=str(self.settings.cache_dir),
                queue_timeout_s=self.settings.queue_timeout_s,
                start_timeout_s=self.settings.start_timeout_s,
                min_instances=self._warm_target(record, spec) if record else 0,
                env=self.instance_env(spec),
                on_event=self._instance_event,
            )
            self._pools[key] = pool
        return pool

    def _instance_event(self, name: str, fields: dict[str, Any]) -> None:
        """An instance went over a limit: into the audit log, under the model's tenant."""
        record = self._models.get(str(fields.get("model")))
        tenant = record.tenant if record else "default"
        try:
            self.audit.record(Actor(tenant, "platform"), name, str(fields.get("model")), fields)
        except Exception:  # the audit log failing must not take serving down
            log.exception("recording %s in the audit log failed", name)

    def _warm_target(self, record: ModelRecord, spec: VersionSpec) -> int:
        # Warm pools (min_instances, schedules, prewarm) apply to versions that receive
        # traffic; a version that no longer does still answers requests addressed to it,
        # then scales to zero.
        # Queued jobs hold instances for the version they were submitted to, routed or not.
        key = _Key(spec.model, spec.version)
        backlog = self._backlog_floor.get(key, 0)
        routed = {t.version for t in record.traffic if t.percent > 0}
        if spec.version not in routed:
            return backlog
        prewarm, until = self._prewarm.get(key, (0, 0.0))
        warm = warm_target(
            spec.scaling.min_instances,
            spec.scaling.warm,
            datetime.now(),
            prewarm=prewarm,
            prewarm_until=until,
            now=time.monotonic(),
        )
        return max(warm, backlog)

    def set_backlog_floor(self, model: str, version: int, instances: int) -> None:
        """Keep `instances` of a version up for its queued jobs (the queue-depth policy);
        0 lets it scale to zero once idle."""
        key = _Key(model, version)
        if self._backlog_floor.get(key, 0) == instances or model not in self._models:
            return
        if instances > 0:
            self._backlog_floor[key] = instances
        else:
            self._backlog_floor.pop(key, None)
        self._apply_warm_pool(self._models[model])

    async def _warm_loop(self) -> None:
        """Re-evaluate warm targets: schedules open and close, prewarm floors expire."""
        while True:
            await asyncio.sleep(_WARM_TICK_S)
            try:
                for record in list(self._models.values()):
                    self._apply_warm_pool(record)
            except Exception:  # a bug here must not stop the loop for good
                log.exception("warm pool tick failed")

    async def prewarm(self, name: str, instances: int, duration_s: float) -> dict[str, Any]:
        """Start `instances` of the model's main version now and keep them `duration_s`
        (then the idle timeout applies as usual). Returns once they serve, or at the start
        timeout with what is up."""
        spec = self.version(name, None)
        if instances > spec.scaling.max_instances:
            raise DeployError(
                f"instances = {instances} exceeds max_instances = {spec.scaling.max_instances}"
                f" of version {spec.version}"
            )
        key = _Key(spec.model, spec.version)
        self._prewarm[key] = (instances, time.monotonic() + duration_s)
        self._apply_warm_pool(self.model(name))
        ready = await self._pools[key].wait_for_instances(
            instances, timeout_s=self.settings.start_timeout_s
        )
        return {
            "model": name,
            "version": spec.version,
            "instances": ready,
            "until": time.time() + duration_s,
        }

    def _apply_warm_pool(self, record: ModelRecord) -> None:
        for spec in record.versions:
            target = self._warm_target(record, spec)
            key = _Key(spec.model, spec.version)
            if key in self._pools:
                self._pools[key].set_min_instances(target)
            elif target > 0:
                self._pool(spec)

    # -- status ------------------------------------------------------------------------------

    def status(self, name: str) -> dict[str, Any]:
        record = self.model(name)
        versions = []
        total = 0
        snapshots = self.snapshot_memory()
        for spec in record.versions:
            pool = self._pools.get(_Key(name, spec.version))
            live = pool.status() if pool else {
                "instances": 0, "starting": 0, "stopping": 0, "queued": 0, "in_flight": 0,
            }  # fmt: skip
            total += live["instances"]
            snapshot = snapshots.get((name, str(spec.version)))
            versions.append({**version_view(spec), **live, "snapshot_bytes": snapshot})
        return {
            "name": record.name,
            "created_at": record.created_at,
            "traffic": [t.model_dump() for t in record.traffic],
            "instances": total,
            "versions": versions,
        }

    def snapshot_memory(self) -> dict[tuple[str, str], int]:
        """Bytes held by each version's snapshot template (absent: none kept)."""
        out: dict[tuple[str, str], int] = {}
        for key, size in self.backend.template_sizes().items():
            model, version, _ = key.split(":", 2)
            out[(model, version)] = size
        return out

    def version_instances(self, model: str, version: int) -> int:
        pool = self._pools.get(_Key(model, version))
        return pool.status()["instances"] if pool else 0

    def instance_count(self, name: str) -> int:
        return sum(p.status()["instances"] for k, p in self._pools.items() if k.model == name)


def version_view(spec: VersionSpec) -> dict[str, Any]:
    return {
        "version": spec.version,
        "runtime": spec.runtime,
        "artifact": {
            "sha256": spec.artifact_sha256,
            "filename": spec.artifact_filename,
            "size": spec.artifact_size,
        },
        "trust": spec.trust,
        "scaling": spec.scaling.model_dump(),
        "timeout_s": spec.timeout_s,
        "memory_mb": spec.memory_mb,
        "python_class": spec.python_class,
        "snapshot": spec.snapshot,
        "batching": spec.batching.model_dump(),
        "cache": spec.cache.model_dump() if spec.cache else None,
        "jobs": spec.jobs.model_dump(),
        "cpu_limit_s": spec.cpu_limit_s,
        "secrets": spec.secrets,
        "signature": spec.signature.model_dump(),
        "created_at": spec.created_at,
    }


def _secret_store(settings: Settings) -> SecretStore | None:
    """The secrets store, when a key is configured; without one, versions cannot name
    secrets (deploy says how to configure it)."""
    source = key_source(
        os.environ, Path(settings.secrets_key_file) if settings.secrets_key_file else None
    )
    if source.env_value is None and source.key_file is None:
        return None
    return SecretStore(settings.state_dir / "secrets.db", source)


def _default_backend(settings: Settings) -> Backend:
    if settings.instance_start == "spawn":
        return LocalBackend()
    return ForkServerBackend(snapshot_budget_bytes=settings.snapshot_memory_mb * 1024 * 1024)
