"""ONNX models through onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from zeroserve.runtimes.base import LoadError, entry
from zeroserve.spec import Signature, TensorSpec
from zeroserve.tensors import Tensors

__all__ = ["OnnxPredictor", "load"]

# onnxruntime type strings -> V2 datatypes.
_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _spec(arg: Any, kind: str) -> TensorSpec:
    datatype = _ORT_TYPES.get(arg.type)
    if datatype is None:
        hint = " (export scikit-learn classifiers with zipmap=False)" if "map" in arg.type else ""
        raise LoadError(f"{kind} {arg.name!r} has type {arg.type}, which is not a tensor{hint}")
    shape = [d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or [])]
    return TensorSpec(name=arg.name, datatype=datatype, shape=shape)


def _utf8(array: np.ndarray) -> np.ndarray:
    """BYTES elements as str for tensor(string) inputs (astype(str) would assume ASCII)."""
    flat = [b.decode("utf-8") if isinstance(b, bytes) else str(b) for b in array.reshape(-1)]
    return np.array(flat, dtype=object).reshape(array.shape)


class OnnxPredictor:
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        so = ort.SessionOptions()
        # One instance is one unit of scale: it uses one core, and the pool adds instances.
        so.intra_op_num_threads = int(options.get("intra_op_threads") or 1)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(entry(path, (".onnx",), "model.onnx")),
                sess_options=so,
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise LoadError(f"onnxruntime could not load the model: {exc}") from exc
        self.signature = Signature(
            inputs=[_spec(i, "input") for i in self._session.get_inputs()],
            outputs=[_spec(o, "output") for o in self._session.get_outputs()],
        )
        self._output_names = [o.name for o in self.signature.outputs]

    def predict(self, inputs: Tensors) -> Tensors:
        feed = {name: (_utf8(arr) if arr.dtype == object else arr) for name, arr in inputs.items()}
        results = self._session.run(self._output_names, feed)
        return {name: np.asarray(r) for name, r in zip(self._output_names, results, strict=True)}


def load(path: Path, options: dict[str, Any]) -> OnnxPredictor:
    return OnnxPredictor(path, options)
