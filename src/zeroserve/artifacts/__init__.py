"""Content-addressed artifact store over fsspec, and the per-machine local cache."""

from zeroserve.artifacts.store import ArtifactError, ArtifactStore, local_artifact_path

__all__ = ["ArtifactError", "ArtifactStore", "local_artifact_path"]
