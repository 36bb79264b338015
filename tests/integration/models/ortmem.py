"""A test model that runs an onnxruntime graph (Tile) whose output is `reps` floats, to make
onnxruntime's own allocator fail under the instance's memory limit; answers with its pid."""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper


class OrtMem:
    inputs: ClassVar = [{"name": "reps", "datatype": "INT64", "shape": [1]}]
    outputs: ClassVar = [{"name": "pid", "datatype": "INT64", "shape": [1]}]

    def load(self, path: str) -> None:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
        reps = helper.make_tensor_value_info("reps", TensorProto.INT64, [1])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
        tile = helper.make_node("Tile", ["x", "reps"], ["y"])
        graph = helper.make_graph([tile], "tile", [x, reps], [y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.session.run(None, {"x": np.ones(1, np.float32), "reps": batch["reps"]})
        return {"pid": np.array([os.getpid()], dtype=np.int64)}
