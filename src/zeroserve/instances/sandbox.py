"""What an instance may see and use: its environment, its private temporary directory, and
its resource limits (issue 6, "Instance limits").

Environment. Instances inherit nothing of the platform's environment (which holds e.g. the
secrets key). The processes that instances come from (the fork server, its templates and
spawned workers) are started with `launch_env()`: the allowlist below plus what the
interpreter needs to import zeroserve. This matters beyond `os.environ`: a forked child's
`/proc/self/environ` is the environment block its ancestor was *exec'd* with, which clearing
`os.environ` later does not erase. Then each instance, first thing after it starts and before
its model loads, replaces its environment with `instance_env()`: the allowlist, its private
HOME and TMPDIR, and the spec's `env` (the version's secrets, given by the platform).

Temporary directory. Each instance gets `<state dir>/tmp/<instance id>.<random>` (mode 0700),
made by the backend before the start (`TempDirs.make`), set as TMPDIR, HOME and
`tempfile.tempdir` in the instance. The instance removes it when it exits normally; the
backend removes it once the process is gone, whatever the way (a `kill -9`'d instance cannot
clean up), and removes everything under `<state dir>/tmp` the first time it uses it in a run
of `zeroserve up` (leftovers of a platform that was killed) and when it closes. Snapshot
templates make their own `template.<random>` directory there on the same terms.

Limits, set in the instance before its model loads:
- memory_mb: RLIMIT_DATA (see `_limit_memory` for why not RLIMIT_AS or a cgroup). An
  allocation past it fails (MemoryError, or the framework's own error: `out_of_memory`); the
  instance reports it and exits with EXIT_OUT_OF_MEMORY, and the gateway says "instance
  exceeded its memory limit of N MB".
- cpu_limit_s: RLIMIT_CPU, CPU seconds over the instance's life (loading included). At the
  soft limit the kernel sends SIGXCPU, whose default action ends the process; the gateway
  sees "killed by SIGXCPU" and says "instance exceeded its CPU-time limit of N s". The hard
  limit, a few seconds later, is SIGKILL, for a model that catches or ignores SIGXCPU.
- no core dumps (RLIMIT_CORE 0): a core file would hold the instance's secrets.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import shutil
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from zeroserve.instances.spec import InstanceSpec

__all__ = [
    "EXIT_OUT_OF_MEMORY",
    "SINGLE_THREADED",
    "TempDirs",
    "base_env",
    "cpu_limit_reason",
    "enter_instance",
    "enter_template",
    "exceeded_limit",
    "instance_env",
    "launch_env",
    "memory_limit_reason",
    "out_of_memory",
    "remove_tmp_dir",
    "tmp_root",
]

# One BLAS/OpenMP thread per instance: instances are the unit of parallelism, and the fork
# server must stay single-threaded to be forked from (forkserver.py).
SINGLE_THREADED = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}

# What an instance keeps of the environment it was started with: what a process needs to run
# (PATH for a model's subprocesses, the locale, the time zone, the hash seed, where shared
# libraries and GPUs are) and the thread pinning above. Nothing that names a secret.
_KEEP = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "PYTHONHASHSEED", "LD_LIBRARY_PATH",
    "CUDA_VISIBLE_DEVICES", *SINGLE_THREADED,
})  # fmt: skip
_KEEP_PREFIXES = ("LC_",)
# Also needed to start the interpreter of a fork server or spawned worker the way the
# gateway's was started (zeroserve run from a source tree); not passed on to instances.
_LAUNCH_ONLY = ("PYTHONPATH",)

# Exit status of an instance that ran out of memory (MemoryError under memory_mb).
EXIT_OUT_OF_MEMORY = 86
# The hard CPU limit is this much past the soft one: time to die of SIGXCPU first.
_CPU_HARD_MARGIN_S = 3


def base_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The allowlisted part of `environ`."""
    return {k: v for k, v in environ.items() if k in _KEEP or k.startswith(_KEEP_PREFIXES)}


def launch_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment to exec a fork server or a spawned worker with."""
    env = base_env(environ)
    env.update({k: environ[k] for k in _LAUNCH_ONLY if k in environ})
    env.update(SINGLE_THREADED)  # before it imports numpy
    return env


def instance_env(
    environ: Mapping[str, str], tmp_dir: str | None, extra: Mapping[str, str]
) -> dict[str, str]:
    """An instance's whole environment: the allowlist, `extra` (the version's secrets), and
    its private temp dir as HOME and TMPDIR (these last: nothing overrides them)."""
    env = {**base_env(environ), **extra}
    if tmp_dir is not None:
        env["HOME"] = env["TMPDIR"] = tmp_dir
    return env


def _replace_environ(env: Mapping[str, str]) -> None:
    # os.environ's clear/update call unsetenv/putenv: C libraries (getenv) and the model's
    # subprocesses see the new environment too.
    os.environ.clear()
    os.environ.update(env)


def _limit_memory(memory_mb: int | None) -> None:
    # RLIMIT_DATA counts the heap and private writable mappings (Linux >= 4.7): what a model's
    # weights, activations and numpy arrays occupy. RLIMIT_AS (the first suggestion)
    # counts address space that is only reserved: measured here (x86_64, glibc, numpy 2.4,
    # one BLAS thread), a process with numpy imported has 98 MB of address space and 48 MB of
    # data; with 8 threads (an instance with concurrency 8) 689 MB and 116 MB, each thread
    # reserving a 64 MB malloc arena and an 8 MB stack; with torch imported too, 1.2 GB and
    # 246 MB. So RLIMIT_AS at 256 or 512 MB refuses instances that use a fraction of that.
    # onnxruntime works under RLIMIT_DATA in forked instances: its allocator fails cleanly
    # (see _ALLOCATION_FAILED; tests/integration/test_limits.py). A cgroup v2 memory.max
    # would count the page cache too, but needs a writable, delegated cgroup per instance,
    # which `zeroserve up` run as a user does not have (the machine this was written on
    # mounts its memory controller on cgroup v1); rlimits work everywhere.
    if memory_mb:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _limit_cpu(cpu_limit_s: float | None) -> None:
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)  # the kernel's SIGXCPU ends the process
    if cpu_limit_s:
        soft = max(1, math.ceil(cpu_limit_s))  # RLIMIT_CPU counts whole seconds: round up
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + _CPU_HARD_MARGIN_S))


def _no_core_dumps() -> None:
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def enter_instance(spec: InstanceSpec) -> None:
    """First thing in an instance (forked or spawned): its environment, temp dir, limits."""
    _replace_environ(instance_env(os.environ, spec.tmp_dir, spec.env))
    tempfile.tempdir = spec.tmp_dir
    _no_core_dumps()
    _limit_memory(spec.memory_mb)
    _limit_cpu(spec.cpu_limit_s)


def enter_template(spec: InstanceSpec) -> str | None:
    """First thing in a snapshot template, before it loads: the allowlisted environment (no
    secrets: those are each instance's, set after the fork) and a temp dir of its own, which
    it returns (None if it could not be made)."""
    try:
        root = tmp_root(spec.cache_dir)
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp_dir: str | None = tempfile.mkdtemp(prefix="template.", dir=root)
    except OSError:
        tmp_dir = None
    _replace_environ(instance_env(os.environ, tmp_dir, {}))
    tempfile.tempdir = tmp_dir
    _no_core_dumps()
    return tmp_dir


def tmp_root(cache_dir: str) -> Path:
    """Where instances' temp dirs live: `tmp` in the state dir, beside the artifact cache."""
    return Path(cache_dir).parent / "tmp"


def remove_tmp_dir(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


class TempDirs:
    """Makes instances' private temp dirs, and sweeps the roots it uses."""

    def __init__(self) -> None:
        self._roots: set[Path] = set()

    def sweep_once(self, root: Path) -> None:
        """The first time this run uses `root`: what is in it is left from an earlier run."""
        if root not in self._roots:
            self._roots.add(root)
            _sweep(root)

    def make(self, spec: InstanceSpec) -> InstanceSpec:
        """`spec` with `tmp_dir` set to a new private directory."""
        root = tmp_root(spec.cache_dir)
        self.sweep_once(root)
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return replace(spec, tmp_dir=tempfile.mkdtemp(prefix=f"{spec.instance_id}.", dir=root))

    def close(self) -> None:
        """Every instance and template is gone: nothing under the roots is in use."""
        for root in self._roots:
            _sweep(root)


def _sweep(root: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        for entry in root.iterdir():
            shutil.rmtree(entry, ignore_errors=True)


# What frameworks raise when an allocation fails, besides MemoryError (pybind11 turns a C++
# std::bad_alloc into one): onnxruntime's arena, measured under RLIMIT_DATA with onnxruntime
# 1.32 ("Fail: [ONNXRuntimeError] : 1 : FAIL : ... BFCArena::AllocateRawInternal ... Failed
# to allocate memory for requested buffer of size 1200000000"), and PyTorch's CPU allocator
# ("DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes").
_ALLOCATION_FAILED = ("Failed to allocate memory", "can't allocate memory")


def out_of_memory(exc: BaseException | None) -> bool:
    """Whether `exc`, or what it was raised from (runtimes wrap the model's errors), is an
    allocation failing. Asked only of an instance with a memory limit."""
    for _ in range(8):  # a chain is short; a cycle must not hang us
        if exc is None:
            return False
        if isinstance(exc, MemoryError) or any(m in str(exc) for m in _ALLOCATION_FAILED):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def memory_limit_reason(memory_mb: int | None) -> str:
    """What happened, after "instance ": the wording clients see names the limit."""
    return f"exceeded its memory limit of {memory_mb} MB"


def cpu_limit_reason(cpu_limit_s: float | None) -> str:
    return f"exceeded its CPU-time limit of {cpu_limit_s:g} s"


def exceeded_limit(returncode: int | None, spec: InstanceSpec) -> tuple[str, str] | None:
    """(label, reason) when an instance's exit status says it went over a limit: the label
    is the `zeroserve_instance_exits` reason ("memory", "cpu_limit"), the reason as in
    `memory_limit_reason`."""
    if returncode == EXIT_OUT_OF_MEMORY and spec.memory_mb:
        return "memory", memory_limit_reason(spec.memory_mb)
    if returncode == -signal.SIGXCPU and spec.cpu_limit_s:
        return "cpu_limit", cpu_limit_reason(spec.cpu_limit_s)
    return None
