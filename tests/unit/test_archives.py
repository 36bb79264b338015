"""Folder artifacts: unpacked once, and nothing may land outside the target (zip slip)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from zeroserve.artifacts import ArtifactError
from zeroserve.artifacts.archives import find_entry, unpack


def _tar(path: Path, members: dict[str, bytes], link: tuple[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type = tarfile.SYMTYPE
            info.linkname = link[1]
            tf.addfile(info)
    return path


def test_a_folder_is_unpacked_once(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "m.tar", {"model.py": b"x = 1", "sub/tokenizer.json": b"{}"})
    folder = unpack(archive, "d1", tmp_path / "unpacked")
    assert (folder / "sub" / "tokenizer.json").read_bytes() == b"{}"
    (folder / "marker").write_text("kept")
    assert unpack(archive, "d1", tmp_path / "unpacked") == folder
    assert (folder / "marker").exists()
    assert find_entry(folder, (".py",), "model.py") == folder / "model.py"
    with pytest.raises(ArtifactError, match=r"exactly one \.onnx"):
        find_entry(folder, (".onnx",), "model.onnx")


@pytest.mark.parametrize(
    ("members", "link"),
    [
        ({"../evil.py": b"boom"}, None),
        ({"model.py": b""}, ("escape", "/etc/passwd")),
        ({"model.py": b""}, ("escape", "../../outside")),
    ],
)
def test_tar_members_outside_the_folder_are_refused(
    tmp_path: Path, members: dict[str, bytes], link: tuple[str, str] | None
) -> None:
    archive = _tar(tmp_path / "evil.tar", members, link)
    with pytest.raises(ArtifactError, match="refused"):
        unpack(archive, "d2", tmp_path / "unpacked")
    assert not (tmp_path / "unpacked" / "d2").exists()
    assert not (tmp_path / "evil.py").exists()


def test_zip_slip_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../evil.py", "boom")
    with pytest.raises(ArtifactError, match="outside the archive"):
        unpack(archive, "d3", tmp_path / "unpacked")
    assert list((tmp_path / "unpacked").iterdir()) == []


def test_absolute_tar_names_land_inside_the_folder(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "abs.tar", {"/tmp/zeroserve-evil.py": b"boom"})
    folder = unpack(archive, "d4", tmp_path / "unpacked")
    assert (folder / "tmp" / "zeroserve-evil.py").exists()
    assert not Path("/tmp/zeroserve-evil.py").exists()
