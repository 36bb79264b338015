"""The bare baseline for bench/first.py: one Starlette route on uvicorn that does, in its
handler, only what a hand-written model server would do for a KServe V2 JSON request —
parse the JSON, build the input array, run onnxruntime, encode the V2 JSON response.

No queue, no instance process, no metering: the difference between zeroserve and this app is
the platform's overhead. Run as

    ZEROSERVE_BASELINE_MODEL=examples/iris/iris.onnx \
        uvicorn --app-dir bench baseline_app:app --port 8000 --no-access-log
"""

from __future__ import annotations

import os

import onnxruntime as ort
from baseline_v2 import Tensors, make_app

MODEL_PATH = os.environ.get("ZEROSERVE_BASELINE_MODEL", "examples/iris/iris.onnx")
MODEL_NAME = os.environ.get("ZEROSERVE_BASELINE_NAME", "iris")

# The same session settings as zeroserve's onnx runtime: one core per instance.
_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_options.inter_op_num_threads = 1
_options.log_severity_level = 3
session = ort.InferenceSession(
    MODEL_PATH, sess_options=_options, providers=["CPUExecutionProvider"]
)
_OUTPUT_NAMES = [o.name for o in session.get_outputs()]


def predict(feed: Tensors) -> Tensors:
    return dict(zip(_OUTPUT_NAMES, session.run(_OUTPUT_NAMES, feed), strict=True))


app = make_app(MODEL_NAME, predict)
