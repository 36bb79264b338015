"""Event triggers: a new file in a watched folder (or fsspec URI) becomes a job.

Each file is taken once, by path and content hash: the pair is committed with the job, so a
restart does not take it again, and a file rewritten with new content is a new job. A file
is taken only once its size and modification time held still between two looks, so one
still being written is not read half-way.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import posixpath
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import fsspec

from zeroserve.jobs.queue import JobQueue, Trigger, TriggerFile

__all__ = ["FoundFile", "TriggerWatcher", "list_matching"]

log = logging.getLogger("zeroserve.jobs")


@dataclass(frozen=True)
class FoundFile:
    path: str  # as the filesystem names it
    size: int
    mtime: float


# What the watcher calls for a settled, unseen file: submit it as a job of the trigger.
Submit = Callable[[Trigger, TriggerFile, bytes], Awaitable[None]]


def _mtime(info: dict[str, Any]) -> float:
    for key in ("mtime", "LastModified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if value is not None and hasattr(value, "timestamp"):
            return float(value.timestamp())
    return 0.0


def list_matching(watch: str, pattern: str) -> list[FoundFile]:
    """Files directly in `watch` whose name matches `pattern` (partial writes excluded)."""
    fs, root = fsspec.core.url_to_fs(watch)
    found = []
    for info in fs.ls(root, detail=True):
        name = posixpath.basename(info["name"].rstrip("/"))
        if info.get("type") != "file" or name.endswith(".partial"):
            continue
        if fnmatch.fnmatchcase(name, pattern):
            found.append(FoundFile(info["name"], int(info.get("size") or 0), _mtime(info)))
    return sorted(found, key=lambda f: f.path)


def read_file(path: str, watch: str, max_bytes: int) -> bytes:
    fs, _ = fsspec.core.url_to_fs(watch)
    with fs.open(path, "rb") as f:
        data: bytes = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{path} is larger than the request limit of {max_bytes} bytes")
    return data


class TriggerWatcher:
    def __init__(self, queue: JobQueue, submit: Submit, *, poll_s: float, max_bytes: int) -> None:
        self.queue = queue
        self.submit = submit
        self.poll_s = poll_s
        self.max_bytes = max_bytes
        # (trigger, path) -> (size, mtime) at the last look: settled when unchanged.
        self._last: dict[tuple[str, str], tuple[int, float]] = {}
        self._reported: set[tuple[str, str, str]] = set()

    async def run(self) -> None:
        while True:
            try:
                for trigger in await asyncio.to_thread(self.queue.triggers):
                    await self._scan(trigger)
            except Exception:
                log.exception("trigger scan failed")
            await asyncio.sleep(self.poll_s)

    async def _scan(self, trigger: Trigger) -> None:
        try:
            files = await asyncio.to_thread(list_matching, trigger.watch, trigger.pattern)
        except Exception as exc:
            self._report(trigger.name, trigger.watch, "", f"cannot list {trigger.watch}: {exc}")
            return
        seen_now = {}
        for found in files:
            key = (trigger.name, found.path)
            seen_now[key] = (found.size, found.mtime)
            if self._last.get(key) == (found.size, found.mtime):
                await self._take(trigger, found)
        stale = [k for k in self._last if k[0] == trigger.name and k not in seen_now]
        for key in stale:
            del self._last[key]
        self._last.update(seen_now)

    async def _take(self, trigger: Trigger, found: FoundFile) -> None:
        try:
            data = await asyncio.to_thread(read_file, found.path, trigger.watch, self.max_bytes)
        except Exception as exc:
            self._report(trigger.name, found.path, "", str(exc))
            return
        source = TriggerFile(trigger.name, found.path, hashlib.sha256(data).hexdigest())
        if await asyncio.to_thread(self.queue.trigger_file_seen, source):
            return
        try:
            await self.submit(trigger, source, data)
        except Exception as exc:  # an invalid request, a removed model: said once per file
            self._report(trigger.name, found.path, source.sha256, str(exc))

    def _report(self, trigger: str, path: str, digest: str, message: str) -> None:
        key = (trigger, path, digest)
        if key not in self._reported:
            self._reported.add(key)
            log.warning("trigger %s: %s: %s", trigger, path, message)
