"""The SQLite registry: immutable versions, numbering, traffic, deletion."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from zeroserve.registry import RegistryError, SqliteRegistry
from zeroserve.routing import pick_version
from zeroserve.spec import ScalingPolicy, Signature, TrafficSplit, VersionSpec


def _spec(model: str, version: int) -> VersionSpec:
    return VersionSpec(
        model=model, version=version, runtime="onnx", artifact_sha256="a" * 64,
        artifact_filename="m.onnx", artifact_size=1, trust=False, scaling=ScalingPolicy(),
        timeout_s=30, memory_mb=None, python_class=None, signature=Signature(),
        created_at=time.time(),
    )  # fmt: skip


def test_versions_are_numbered_immutable_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    reg = SqliteRegistry(path)
    assert reg.next_version("iris") == 1
    reg.add_version(_spec("iris", 1))
    reg.add_version(_spec("iris", 2))
    with pytest.raises(RegistryError, match="already exists"):
        reg.add_version(_spec("iris", 2))
    reg.close()

    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        db.execute("UPDATE versions SET spec = '{}' WHERE model = 'iris'")
    db.close()

    reg = SqliteRegistry(path)
    record = reg.get("iris")
    assert record is not None
    assert [v.version for v in record.versions] == [1, 2]
    assert record.traffic == (TrafficSplit(version=2, percent=100),)
    assert reg.next_version("iris") == 3
    reg.close()


def test_traffic_must_name_known_versions_and_sum_to_100(tmp_path: Path) -> None:
    reg = SqliteRegistry(tmp_path / "r.db")
    reg.add_version(_spec("iris", 1))
    reg.add_version(_spec("iris", 2))
    split = [TrafficSplit(version=1, percent=90), TrafficSplit(version=2, percent=10)]
    assert reg.set_traffic("iris", split).traffic == tuple(split)
    with pytest.raises(RegistryError, match=r"no version\(s\) \[3\]"):
        reg.set_traffic("iris", [TrafficSplit(version=3, percent=100)])
    with pytest.raises(RegistryError, match="add up to 100"):
        reg.set_traffic("iris", [TrafficSplit(version=1, percent=50)])
    assert reg.delete("iris")
    assert reg.get("iris") is None
    assert not reg.delete("iris")
    assert reg.next_version("iris") == 1
    reg.close()


def test_pick_version_follows_the_split() -> None:
    split = [TrafficSplit(version=1, percent=90), TrafficSplit(version=2, percent=10)]
    assert pick_version(split, 0.0) == 1
    assert pick_version(split, 0.899) == 1
    assert pick_version(split, 0.9) == 2
    assert pick_version(split, 0.999) == 2
