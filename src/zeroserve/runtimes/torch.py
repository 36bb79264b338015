"""TorchScript modules (`torch.jit.save`), the optional `torch` extra.

TorchScript carries argument names but no datatypes, so inputs are matched by name and any
datatype is accepted; outputs are `output0`, `output1`, ... in the order forward returns them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from zeroserve.runtimes.base import LoadError, entry
from zeroserve.spec import Signature, TensorSpec
from zeroserve.tensors import Tensors

__all__ = ["TorchPredictor", "load"]


class TorchPredictor:
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        # One instance is one unit of scale: one intra-op thread, the pool adds instances.
        torch.set_num_threads(int(options.get("intra_op_threads") or 1))
        try:
            self._module = torch.jit.load(  # type: ignore[no-untyped-call]
                str(entry(path, (".pt", ".pth", ".torchscript"), "model.pt")), map_location="cpu"
            )
        except Exception as exc:
            raise LoadError(f"torch.jit.load failed: {exc}") from exc
        self._module.eval()
        args = [a.name for a in self._module.forward.schema.arguments[1:]]  # drop `self`
        self._arg_names = args
        self.signature = Signature(inputs=[TensorSpec(name=a) for a in args], outputs=[])

    def predict(self, inputs: Tensors) -> Tensors:
        tensors = [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in self._arg_names]
        with torch.inference_mode():
            result = self._module(*tensors)
        if isinstance(result, torch.Tensor):
            result = (result,)
        return {f"output{i}": r.detach().cpu().numpy() for i, r in enumerate(result)}


def load(path: Path, options: dict[str, Any]) -> TorchPredictor:
    return TorchPredictor(path, options)
