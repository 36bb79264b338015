"""Artifacts are stored by their sha256 under `<root>/sha256/<aa>/<digest>`.

The root is any fsspec URI: `file:///...` works out of the box, `s3://` and `gs://` once the
matching fsspec backend (s3fs, gcsfs) is installed. An instance never reads the store directly:
it asks `local_artifact_path`, which returns a local file checked against its digest, so a
runtime always loads from local disk (and can memory-map it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

__all__ = ["ArtifactError", "ArtifactStore", "local_artifact_path", "sha256_file"]

log = logging.getLogger("zeroserve.artifacts")

_CHUNK = 1024 * 1024


class ArtifactError(Exception):
    """An artifact that cannot be stored or fetched (missing, too large, digest mismatch)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _key(digest: str) -> str:
    return f"sha256/{digest[:2]}/{digest}"


def _fs(root: str) -> tuple[Any, str]:
    import fsspec  # lazily: an instance reading a file:// store never needs it (~20 ms)

    fs, path = fsspec.core.url_to_fs(root)
    return fs, str(path).rstrip("/")


class ArtifactStore:
    def __init__(self, root_uri: str, staging_dir: Path) -> None:
        self.root_uri = root_uri
        self._fs, self._root = _fs(root_uri)
        self._staging = staging_dir
        self._staging.mkdir(parents=True, exist_ok=True)
        self._fs.makedirs(self._root, exist_ok=True)

    def exists(self, digest: str) -> bool:
        return bool(self._fs.exists(f"{self._root}/{_key(digest)}"))

    def size(self, digest: str) -> int:
        return int(self._fs.size(f"{self._root}/{_key(digest)}"))

    async def put_stream(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> tuple[str, int]:
        """Store an upload; returns (sha256, size). Refuses bodies over `max_bytes`."""
        h = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self._staging, prefix="upload-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise ArtifactError(
                            f"artifact is larger than the limit of {max_bytes} bytes"
                        )
                    h.update(chunk)
                    f.write(chunk)
            digest = h.hexdigest()
            # A remote store (s3://) blocks on the network: keep it off the event loop.
            await asyncio.to_thread(self._put_local, tmp, digest)
            return digest, size
        finally:
            await asyncio.to_thread(tmp.unlink, missing_ok=True)

    def put_uri(self, uri: str, *, max_bytes: int) -> tuple[str, int]:
        """Copy an artifact from any fsspec URI (or local path) into the store."""
        fd, tmp_name = tempfile.mkstemp(dir=self._staging, prefix="fetch-")
        os.close(fd)
        tmp = Path(tmp_name)
        import fsspec

        try:
            try:
                with fsspec.open(uri, "rb") as src, tmp.open("wb") as dst:
                    copied = 0
                    while chunk := src.read(_CHUNK):
                        copied += len(chunk)
                        if copied > max_bytes:
                            raise ArtifactError(
                                f"artifact {uri} is larger than the limit of {max_bytes} bytes"
                            )
                        dst.write(chunk)
            except (FileNotFoundError, IsADirectoryError) as exc:
                raise ArtifactError(f"artifact {uri} not found") from exc
            except ImportError as exc:
                raise ArtifactError(f"cannot read {uri}: {exc}") from exc
            digest = sha256_file(tmp)
            self._put_local(tmp, digest)
            return digest, tmp.stat().st_size
        finally:
            tmp.unlink(missing_ok=True)

    def _put_local(self, local: Path, digest: str) -> None:
        target = f"{self._root}/{_key(digest)}"
        if self._fs.exists(target) and (
            not self.root_uri.startswith("file://") or _verified(Path(target), digest)
        ):
            return  # content-addressed: same digest, same bytes (a corrupted copy is replaced)
        self._fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        partial = f"{target}.partial-{os.getpid()}"
        self._fs.put_file(str(local), partial)
        self._fs.mv(partial, target)


def _verified(path: Path, digest: str) -> bool:
    """Whether `path` holds the bytes of `digest`. Hashing a 90 MB model costs ~100 ms, so a
    marker beside the file remembers a good check by (size, mtime): any write to the file
    changes its mtime and forces the next check to hash again."""
    marker = path.with_name(path.name + ".verified")
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    stamp = f"{st.st_size} {st.st_mtime_ns} {digest}"
    with contextlib.suppress(OSError):
        if marker.read_text() == stamp:
            return True
    if sha256_file(path) != digest:
        return False
    _mark(path, digest)
    return True


def _mark(path: Path, digest: str) -> None:
    """Record that `path` (as it is now) holds `digest`."""
    marker = path.with_name(path.name + ".verified")
    with contextlib.suppress(OSError):  # a read-only store still serves, it just hashes again
        st = path.stat()
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}")
        tmp.write_text(f"{st.st_size} {st.st_mtime_ns} {digest}")
        tmp.replace(marker)


def local_artifact_path(store_uri: str, digest: str, cache_dir: Path) -> Path:
    """A local file holding the artifact `digest`, checked against it before any load.

    A local store (file://) is read in place: copying would double the disk use for nothing;
    if its copy is corrupt there is nothing to refetch from, so that is an error. A remote
    artifact is downloaded once per machine into `cache_dir`; a cached copy that no longer
    matches its digest is deleted and fetched again, never loaded.
    """
    if store_uri.startswith("file://"):
        path = Path(unquote(urlparse(store_uri).path)) / _key(digest)
        if not path.exists():
            raise ArtifactError(f"artifact sha256:{digest} is missing from the store")
        if not _verified(path, digest):
            raise ArtifactError(
                f"artifact sha256:{digest} in the store does not match its digest (corrupted);"
                " deploy the file again"
            )
        return path
    cached = cache_dir / _key(digest)
    if cached.exists():
        if _verified(cached, digest):
            return cached
        log.warning("cached artifact sha256:%s is corrupted; fetching it again", digest)
        cached.unlink(missing_ok=True)
    return _fetch(store_uri, digest, cached)


def _fetch(store_uri: str, digest: str, cached: Path) -> Path:
    fs, root = _fs(store_uri)
    source = f"{root}/{_key(digest)}"
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cached.parent, prefix=".fetch-")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            with fs.open(source, "rb") as src, tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        except FileNotFoundError:
            raise ArtifactError(f"artifact sha256:{digest} is missing from the store") from None
        got = sha256_file(tmp)
        if got != digest:
            raise ArtifactError(f"artifact sha256:{digest} fetched with sha256:{got}; not loaded")
        tmp.replace(cached)
    finally:
        tmp.unlink(missing_ok=True)
    _mark(cached, digest)
    return cached
