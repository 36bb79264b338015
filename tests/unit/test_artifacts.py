"""Content-addressed store over fsspec, and the local cache that checks digests."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import fsspec
import pytest

from zeroserve.artifacts import ArtifactError, ArtifactStore, local_artifact_path


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 7):
        yield data[i : i + 7]


def test_upload_is_content_addressed_and_read_in_place(tmp_path: Path) -> None:
    store = ArtifactStore((tmp_path / "store").as_uri(), tmp_path / "staging")
    data = b"model bytes" * 100
    digest, size = asyncio.run(store.put_stream(_chunks(data), max_bytes=10_000))
    assert digest == hashlib.sha256(data).hexdigest()
    assert size == len(data)
    assert store.exists(digest)
    again, _ = asyncio.run(store.put_stream(_chunks(data), max_bytes=10_000))
    assert again == digest
    local = local_artifact_path(store.root_uri, digest, tmp_path / "cache")
    assert local.read_bytes() == data
    assert not (tmp_path / "cache").exists()  # a local store is not copied
    with pytest.raises(ArtifactError, match="larger than the limit"):
        asyncio.run(store.put_stream(_chunks(data), max_bytes=100))
    assert list((tmp_path / "staging").iterdir()) == []


def test_remote_artifact_is_cached_once_and_checked(tmp_path: Path) -> None:
    # memory:// is a real fsspec filesystem that is not local disk, like s3:// or gs://.
    root = "memory://zeroserve-test-store"
    store = ArtifactStore(root, tmp_path / "staging")
    src = tmp_path / "m.onnx"
    src.write_bytes(b"weights")
    digest, _ = store.put_uri(str(src), max_bytes=1000)
    cached = local_artifact_path(root, digest, tmp_path / "cache")
    assert cached.read_bytes() == b"weights"
    assert str(cached).startswith(str(tmp_path / "cache"))

    fs = fsspec.filesystem("memory")
    tampered = hashlib.sha256(b"other").hexdigest()
    fs.pipe(f"/zeroserve-test-store/sha256/{tampered[:2]}/{tampered}", b"not other")
    with pytest.raises(ArtifactError, match="not loaded"):
        local_artifact_path(root, tampered, tmp_path / "cache")
    assert not (tmp_path / "cache" / "sha256" / tampered[:2] / tampered).exists()
    with pytest.raises(ArtifactError, match="not found"):
        store.put_uri(str(tmp_path / "missing.onnx"), max_bytes=1000)


def test_corrupted_cached_artifact_is_fetched_again_not_loaded(tmp_path: Path) -> None:
    root = "memory://zeroserve-test-refetch"
    store = ArtifactStore(root, tmp_path / "staging")
    src = tmp_path / "m.onnx"
    src.write_bytes(b"the real weights")
    digest, _ = store.put_uri(str(src), max_bytes=1000)
    cache = tmp_path / "cache"
    cached = local_artifact_path(root, digest, cache)
    assert cached.read_bytes() == b"the real weights"
    cached.write_bytes(b"the real weighTs")  # a flipped byte on disk
    again = local_artifact_path(root, digest, cache)
    assert again == cached
    assert again.read_bytes() == b"the real weights"


def test_corrupted_local_store_copy_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore((tmp_path / "store").as_uri(), tmp_path / "staging")
    src = tmp_path / "m.onnx"
    src.write_bytes(b"weights")
    digest, _ = store.put_uri(str(src), max_bytes=1000)
    path = local_artifact_path(store.root_uri, digest, tmp_path / "cache")
    assert path.read_bytes() == b"weights"
    path.write_bytes(b"weightz")
    with pytest.raises(ArtifactError, match="does not match its digest"):
        local_artifact_path(store.root_uri, digest, tmp_path / "cache")


def test_uploading_again_repairs_a_corrupted_local_store_copy(tmp_path: Path) -> None:
    store = ArtifactStore((tmp_path / "store").as_uri(), tmp_path / "staging")
    data = b"weights" * 10
    digest, _ = asyncio.run(store.put_stream(_chunks(data), max_bytes=1000))
    path = local_artifact_path(store.root_uri, digest, tmp_path / "cache")
    path.write_bytes(b"garbage")
    asyncio.run(store.put_stream(_chunks(data), max_bytes=1000))
    assert local_artifact_path(store.root_uri, digest, tmp_path / "cache").read_bytes() == data
