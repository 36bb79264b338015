"""The runtime interface: `load(path, options) -> Predictor`; `predict(batch) -> batch`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

from zeroserve.spec import Signature
from zeroserve.tensors import Tensors

__all__ = ["LoadError", "Predictor", "entry", "load_predictor"]


class LoadError(Exception):
    """The artifact could not be loaded by its runtime; the message says why."""


class Predictor(Protocol):
    signature: Signature

    def predict(self, inputs: Tensors) -> Tensors:
        """Run one batch: every input's first dimension is the batch."""
        ...


_MODULES = {
    "onnx": "zeroserve.runtimes.onnx",
    "sklearn": "zeroserve.runtimes.sklearn",
    "python": "zeroserve.runtimes.python",
    "torch": "zeroserve.runtimes.torch",
}


def entry(path: Path, suffixes: tuple[str, ...], preferred: str) -> Path:
    """The file to load: `path` itself, or the model file inside an unpacked archive."""
    if not path.is_dir():
        return path
    from zeroserve.artifacts.archives import find_entry
    from zeroserve.artifacts.store import ArtifactError

    try:
        return find_entry(path, suffixes, preferred)
    except ArtifactError as exc:
        raise LoadError(str(exc)) from None


def load_predictor(runtime: str, path: Path, options: dict[str, Any]) -> Predictor:
    try:
        module = importlib.import_module(_MODULES[runtime])
    except KeyError:
        raise LoadError(f"unknown runtime {runtime!r}; use one of {', '.join(_MODULES)}") from None
    except ImportError as exc:
        raise LoadError(
            f"runtime {runtime!r} is not installed here ({exc}); "
            f"install it with: pip install 'zeroserve[{runtime}]'"
        ) from exc
    predictor: Predictor = module.load(path, options)
    return predictor
