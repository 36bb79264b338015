"""A user's Python class with `load(path)` and `predict(batch)`.

The artifact is a `.py` file. The class is the one named by `python_class`, or else the single
class in the file that defines both methods. `predict` takes a dict of named numpy arrays
(the batch) and returns a dict of named arrays, or one array (named `output0`). A `predict`
with a second parameter also gets the batch's requests in order: a list of
`{"rows": n, "job_id": ..., "idempotency_key": ..., "attempt": ...}` (the keys a request
has; empty when none has any).
The class may declare `inputs` / `outputs` as lists of {name, datatype, shape}; the gateway
then validates requests against them.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

import numpy as np

from zeroserve.runtimes.base import LoadError, entry
from zeroserve.spec import Signature, TensorSpec
from zeroserve.tensors import Tensors

__all__ = ["PythonPredictor", "load"]


def _find_class(module: Any, wanted: str | None) -> type:
    if wanted:
        cls = getattr(module, wanted, None)
        if not inspect.isclass(cls):
            raise LoadError(f"the file defines no class {wanted!r}")
        return cls
    found = [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if obj.__module__ == module.__name__ and hasattr(obj, "load") and hasattr(obj, "predict")
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise LoadError(
            f"expected exactly one class with load() and predict() (found: {names});"
            " name it with python_class"
        )
    return found[0]


def _specs(raw: Any, kind: str) -> list[TensorSpec]:
    try:
        return [TensorSpec(**item) for item in raw]
    except Exception as exc:
        raise LoadError(f"the class's `{kind}` declaration is invalid: {exc}") from exc


class PythonPredictor:
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        # The artifact is stored under its digest, without a .py suffix: name the loader.
        source = entry(path, (".py",), "model.py")
        if path.is_dir():  # an archive: its folder goes on sys.path for the model's own modules
            sys.path.insert(0, str(path))
        loader = importlib.machinery.SourceFileLoader("zeroserve_user_model", str(source))
        spec = importlib.util.spec_from_loader(loader.name, loader)
        if spec is None or spec.loader is None:
            raise LoadError(f"cannot import {path.name} as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise LoadError(
                f"importing the model file failed: {type(exc).__name__}: {exc}"
            ) from exc
        cls = _find_class(module, options.get("python_class"))
        try:
            self._model = cls()
            self._model.load(str(path))
        except Exception as exc:
            raise LoadError(f"{cls.__name__}.load() failed: {type(exc).__name__}: {exc}") from exc
        # predict(batch, requests): the model wants to know the batch's requests (rows, job
        # id, idempotency key), e.g. to make its side effects idempotent.
        self.takes_requests = _positional_params(self._model.predict) >= 2
        declared_in = getattr(self._model, "inputs", None)
        declared_out = getattr(self._model, "outputs", None)
        self.signature = Signature(
            inputs=_specs(declared_in, "inputs") if declared_in else [],
            outputs=_specs(declared_out, "outputs") if declared_out else [],
            inputs_known=bool(declared_in),
        )

    def predict(self, inputs: Tensors, requests: list[dict[str, Any]] | None = None) -> Tensors:
        if self.takes_requests:
            result = self._model.predict(inputs, requests or [])
        else:
            result = self._model.predict(inputs)
        if isinstance(result, dict):
            return {str(k): np.asarray(v) for k, v in result.items()}
        return {"output0": np.asarray(result)}


def _positional_params(fn: Any) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds)


def load(path: Path, options: dict[str, Any]) -> PythonPredictor:
    return PythonPredictor(path, options)
