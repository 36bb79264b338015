"""Instance limits (issue 6): memory and CPU time are enforced, the instance is replaced and
the client gets a 503 that names the limit; instances see none of the platform's environment,
only what their spec gives them, and a private temp dir that goes away with them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.conftest import descendants, wait_for
from zeroserve.artifacts import ArtifactStore
from zeroserve.instances import InstanceSpec, LimitExceeded, LocalBackend, StartError
from zeroserve.instances.forking import ForkServerBackend
from zeroserve.instances.sandbox import base_env, instance_env, out_of_memory
from zeroserve.spec import runtime_options

pytestmark = pytest.mark.integration

MODELS = Path(__file__).parent / "models"


def _mb(n: int) -> dict[str, Any]:
    return {"inputs": [{"name": "mb", "datatype": "INT64", "shape": [1], "data": [n]}]}


def _cpu(seconds: float) -> dict[str, Any]:
    return {"inputs": [{"name": "cpu_s", "datatype": "FP64", "shape": [1], "data": [seconds]}]}


def _pid(r: Any) -> int:
    assert r.status_code == 200, r.text
    return int(r.json()["outputs"][0]["data"][0])


def _exits(server: Any, model: str, reason: str) -> float:
    """zeroserve_instance_exits_total{model, version="1", reason} from /metrics, or 0."""
    with server.client() as c:
        text = c.get("/metrics").text
    for line in text.splitlines():
        if found := re.fullmatch(r"zeroserve_instance_exits_total\{(.*)\} (\S+)", line):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
            if labels == {"model": model, "version": "1", "reason": reason}:
                return float(found.group(2))
    return 0.0


def test_memory_hog_gets_503_naming_the_limit_and_is_replaced(server: Any) -> None:
    server.deploy("memhog", MODELS / "memhog.py", "--memory", "256")
    server.deploy("crashy", MODELS / "crashy.py")
    with server.client() as c:
        before = _pid(c.post("/v2/models/memhog/infer", json=_mb(8)))
        r = c.post("/v2/models/memhog/infer", json=_mb(1024))
        assert r.status_code == 503, r.text
        assert "instance exceeded its memory limit of 256 MB" in r.json()["error"]
        assert "retry-after" in r.headers
        wait_for(lambda: before not in server.worker_pids(), timeout_s=5)
        # The same model with a small input, on a fresh instance; another model too.
        assert _pid(c.post("/v2/models/memhog/infer", json=_mb(8))) != before
        fine = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [21]}]}
        r = c.post("/v2/models/crashy/infer", json=fine)
        assert r.status_code == 200, r.text
    assert _exits(server, "memhog", "memory") == 1.0
    assert _exits(server, "memhog", "crashed") == 0.0
    assert "exceeded its memory limit of 256 MB" in server.log()


def test_cpu_burner_gets_503_naming_the_limit_and_is_replaced(server: Any, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("cpu_limit_s: 1\n")
    server.deploy("burner", MODELS / "cpuburn.py", "-f", str(spec))
    with server.client() as c:
        before = _pid(c.post("/v2/models/burner/infer", json=_cpu(0)))
        r = c.post("/v2/models/burner/infer", json=_cpu(30))
        assert r.status_code == 503, r.text
        assert "instance exceeded its CPU-time limit of 1 s" in r.json()["error"]
        assert "retry-after" in r.headers
        assert _pid(c.post("/v2/models/burner/infer", json=_cpu(0))) != before
    assert _exits(server, "burner", "cpu_limit") == 1.0


@pytest.mark.parametrize("start", ["fork", "snapshot", "spawn"])
def test_instances_see_no_platform_environment_and_a_private_temp_dir(
    server_factory: Any, start: str
) -> None:
    env = {"ZEROSERVE_TEST_SECRET": "leak"}
    if start == "spawn":
        env["ZEROSERVE_INSTANCE_START"] = "spawn"
    server = server_factory(**env)
    flags = ["--snapshot"] if start == "snapshot" else []
    server.deploy("envdump", MODELS / "envdump.py", *flags)
    x = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [1]}]}
    with server.client() as c:
        r = c.post("/v2/models/envdump/infer", json=x)
        assert r.status_code == 200, r.text
    report = json.loads(r.json()["outputs"][0]["data"][0])
    for seen in (report["environ"], report["loaded_with"]):
        assert "ZEROSERVE_TEST_SECRET" not in seen
        assert "leak" not in seen.values()
    assert "leak" not in report["exec_environ"]
    # No process of the platform's family carries it either: fork server, templates, ...
    for pid, _ in descendants(server.proc.pid):
        with contextlib.suppress(OSError):  # it may have exited meanwhile
            assert b"leak" not in Path(f"/proc/{pid}/environ").read_bytes()

    tmp = Path(report["tempdir"])
    assert report["environ"]["TMPDIR"] == report["environ"]["HOME"] == str(tmp)
    assert tmp.parent == (server.state_dir / "tmp").resolve()
    assert tmp.name.startswith("envdump-v1-")
    assert tmp.stat().st_mode & 0o777 == 0o700
    assert Path(report["tmp_file"]).parent == tmp
    server.cli("rm", "envdump")
    wait_for(lambda: not tmp.exists(), timeout_s=5)


@pytest.mark.parametrize("backend_kind", ["fork", "spawn"])
def test_spec_env_reaches_the_instance_and_no_log_or_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend_kind: str
) -> None:
    monkeypatch.setenv("ZEROSERVE_TEST_SECRET", "leak")  # the platform's own environment
    store = ArtifactStore((tmp_path / "artifacts").as_uri(), tmp_path / "staging")
    digest, _ = store.put_uri((MODELS / "envdump.py").as_uri(), max_bytes=1 << 20)
    spec = InstanceSpec(
        instance_id="envdump-v1-1-abcdef", model="envdump", version=1, runtime="python",
        artifact_sha256=digest, store_uri=store.root_uri, cache_dir=str(tmp_path / "cache"),
        concurrency=1, options=runtime_options(None, "envdump.py"),
        env={"MODEL_TOKEN": "s3cr3t-token"},
    )  # fmt: skip
    assert "s3cr3t-token" not in repr(spec)
    assert "s3cr3t-token" not in json.dumps(spec.redacted())

    async def run() -> tuple[dict[str, Any], str]:
        backend = ForkServerBackend(snapshot_budget_bytes=0) if backend_kind == "fork" else (
            LocalBackend()
        )  # fmt: skip
        try:
            instance = await backend.start(spec, timeout_s=30)
            out = await instance.infer({"x": np.array([1], dtype=np.int64)})
            report = json.loads(out["report"][0])
            with open(f"/proc/{report['pid']}/cmdline") as f:  # noqa: ASYNC230 - /proc
                cmdline = f.read()
            await instance.stop()
            gone = not await asyncio.to_thread(os.path.exists, report["tempdir"])
            assert gone  # with the instance, before the backend closes
            return report, cmdline
        finally:
            await backend.close()

    report, cmdline = asyncio.run(run())
    assert report["environ"]["MODEL_TOKEN"] == "s3cr3t-token"
    assert "ZEROSERVE_TEST_SECRET" not in report["environ"]
    assert "leak" not in report["exec_environ"]
    assert "s3cr3t-token" not in cmdline  # the spec is not on a command line
    assert Path(report["tempdir"]).parent == tmp_path / "tmp"


def test_memory_exceeded_while_loading_is_a_start_error_naming_the_limit(tmp_path: Path) -> None:
    store = ArtifactStore((tmp_path / "artifacts").as_uri(), tmp_path / "staging")
    digest, _ = store.put_uri((MODELS / "memhog.py").as_uri(), max_bytes=1 << 20)
    spec = InstanceSpec(
        instance_id="memhog-v1-1-abcdef", model="memhog", version=1, runtime="python",
        artifact_sha256=digest, store_uri=store.root_uri, cache_dir=str(tmp_path / "cache"),
        concurrency=1, memory_mb=256, options=runtime_options(None, "memhog.py"),
        env={"LOAD_MB": "1024"},
    )  # fmt: skip

    async def run() -> StartError:
        backend = ForkServerBackend(snapshot_budget_bytes=0)
        try:
            with pytest.raises(StartError) as failed:
                await backend.start(spec, timeout_s=30)
            return failed.value
        finally:
            await backend.close()

    error = asyncio.run(run())
    assert "instance exceeded its memory limit of 256 MB while loading" in str(error)
    assert error.reason == "memory"
    assert not error.retryable
    assert list((tmp_path / "tmp").iterdir()) == []  # its temp dir went with it


def test_onnxruntime_failing_to_allocate_under_the_limit_is_the_memory_limit(
    tmp_path: Path,
) -> None:
    store = ArtifactStore((tmp_path / "artifacts").as_uri(), tmp_path / "staging")
    digest, _ = store.put_uri((MODELS / "ortmem.py").as_uri(), max_bytes=1 << 20)
    spec = InstanceSpec(
        instance_id="ortmem-v1-1-abcdef", model="ortmem", version=1, runtime="python",
        artifact_sha256=digest, store_uri=store.root_uri, cache_dir=str(tmp_path / "cache"),
        concurrency=1, memory_mb=256, options=runtime_options(None, "ortmem.py"),
    )  # fmt: skip

    async def run() -> tuple[LimitExceeded, str | None]:
        backend = ForkServerBackend(snapshot_budget_bytes=0)
        try:
            instance = await backend.start(spec, timeout_s=30)
            await instance.infer({"reps": np.array([1000], dtype=np.int64)})  # 4 kB: fine
            with pytest.raises(LimitExceeded) as failed:  # 1.2 GB
                await instance.infer({"reps": np.array([300_000_000], dtype=np.int64)})
            await instance.wait_closed()
            return failed.value, instance.limit_exceeded
        finally:
            await backend.close()

    error, exited_for = asyncio.run(run())
    assert "instance exceeded its memory limit of 256 MB" in str(error)
    assert "Failed to allocate memory" in str(error)  # onnxruntime's own words
    assert error.reason == exited_for == "memory"


def test_an_allocation_failure_is_recognised_down_the_exception_chain() -> None:
    wrapped = RuntimeError("Model.load() failed: MemoryError")
    wrapped.__cause__ = MemoryError()
    assert out_of_memory(wrapped)
    assert out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: 8 bytes"))
    assert not out_of_memory(ValueError("x must not be zero"))


def test_a_remote_store_is_read_by_the_gateway_for_the_instance(tmp_path: Path) -> None:
    # An instance has none of the platform's store credentials; a memory:// store lives in
    # this process only, so the instance can load the model only if the gateway fetched it.
    store = ArtifactStore(f"memory://zs-limits-{tmp_path.name}", tmp_path / "staging")
    digest, _ = store.put_uri((MODELS / "crashy.py").as_uri(), max_bytes=1 << 20)
    spec = InstanceSpec(
        instance_id="crashy-v1-1-abcdef", model="crashy", version=1, runtime="python",
        artifact_sha256=digest, store_uri=store.root_uri, cache_dir=str(tmp_path / "cache"),
        concurrency=1, options=runtime_options(None, "crashy.py"),
    )  # fmt: skip

    async def run() -> list[int]:
        backend = ForkServerBackend(snapshot_budget_bytes=0)
        try:
            instance = await backend.start(spec, timeout_s=30)
            out = await instance.infer({"x": np.array([21], dtype=np.int64)})
            await instance.stop()
            return [int(v) for v in out["y"]]
        finally:
            await backend.close()

    assert asyncio.run(run()) == [42]


def test_instance_environment_is_the_allowlist_the_spec_and_its_temp_dir() -> None:
    platform = {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "OMP_NUM_THREADS": "1",
        "ZEROSERVE_SECRETS_KEY": "k", "AWS_SECRET_ACCESS_KEY": "a", "HOME": "/root",
    }  # fmt: skip
    assert base_env(platform) == {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "OMP_NUM_THREADS": "1"
    }  # fmt: skip
    env = instance_env(platform, "/state/tmp/i.x", {"TOKEN": "t", "HOME": "/elsewhere"})
    assert env["TOKEN"] == "t"
    assert env["HOME"] == env["TMPDIR"] == "/state/tmp/i.x"  # nothing overrides these
    assert "ZEROSERVE_SECRETS_KEY" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
