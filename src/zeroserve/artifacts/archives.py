"""Directory artifacts: a model folder (weights, tokenizer, code) shipped as one tar or zip.

An archive is unpacked once per machine next to the artifact cache, refusing any member that
would land outside the target (absolute paths, `..`, links out of it: "zip slip"), devices and
other special files. The unpacked folder is published by an atomic rename, so a concurrent or
interrupted unpack never leaves a half folder behind.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from zeroserve.artifacts.store import ArtifactError

__all__ = ["ARCHIVE_SUFFIXES", "find_entry", "is_archive", "unpack"]

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def is_archive(filename: str) -> bool:
    return filename.lower().endswith(ARCHIVE_SUFFIXES)


def _safe_zip_members(zf: zipfile.ZipFile) -> None:
    for info in zf.infolist():
        name = PurePosixPath(info.filename)
        if name.is_absolute() or ".." in name.parts:
            raise ArtifactError(f"archive member {info.filename!r} points outside the archive")
        file_type = (info.external_attr >> 16) & 0o170000  # S_IFMT of the Unix mode, if any
        if file_type not in (0, 0o100000, 0o040000):  # unset, regular file, directory
            raise ArtifactError(f"archive member {info.filename!r} is not a regular file")


def unpack(archive: Path, digest: str, root: Path) -> Path:
    """The folder holding the unpacked archive `digest` (unpacked on first use)."""
    target = root / digest
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{digest[:12]}-"))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _safe_zip_members(zf)
                zf.extractall(tmp)
        else:
            try:
                with tarfile.open(archive) as tf:
                    # The "data" filter refuses absolute names, `..`, links leaving the
                    # folder, devices and setuid bits (PEP 706).
                    tf.extractall(tmp, filter="data")
            except tarfile.FilterError as exc:
                raise ArtifactError(f"archive refused: {exc}") from None
            except tarfile.TarError as exc:
                raise ArtifactError(f"not a readable tar or zip archive: {exc}") from None
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # lost a race to another instance: theirs is as good
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def find_entry(folder: Path, suffixes: tuple[str, ...], preferred: str) -> Path:
    """The file a runtime loads from an unpacked folder: `preferred` if present, else the one
    file with a matching suffix."""
    if (folder / preferred).is_file():
        return folder / preferred
    found = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(suffixes))
    if len(found) != 1:
        names = ", ".join(str(p.relative_to(folder)) for p in found) or "none"
        raise ArtifactError(
            f"expected {preferred} or exactly one {'/'.join(suffixes)} file in the archive"
            f" (found: {names})"
        )
    return found[0]
