"""The bare MiniLM baseline for bench/load.py: one Starlette route on uvicorn that loads the
model folder's own `model.py` class in-process and, in its handler, does only what a
hand-written model server would do for a KServe V2 JSON request: parse the JSON, build the
`text` BYTES array, call `predict` (one request, one call: no batching), encode the V2 JSON
response (`embedding` FP32 [N, 384]).

No queue, no instance process, no batcher: the difference between zeroserve and this app is
what the platform adds (or gains, with batching and a second instance). Run as

    ZEROSERVE_BASELINE_MODEL=examples/minilm/build/minilm \
        uvicorn --app-dir bench baseline_minilm:app --port 8000 --no-access-log
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from baseline_v2 import make_app

MODEL_DIR = os.environ.get("ZEROSERVE_BASELINE_MODEL", "examples/minilm/build/minilm")
MODEL_NAME = os.environ.get("ZEROSERVE_BASELINE_NAME", "minilm")
MODEL_CLASS = os.environ.get("ZEROSERVE_BASELINE_CLASS", "MiniLM")


def _load_model() -> Any:
    spec = importlib.util.spec_from_file_location(
        "_baseline_model", os.path.join(MODEL_DIR, "model.py")
    )
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {MODEL_DIR}/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    instance = getattr(module, MODEL_CLASS)()
    instance.load(MODEL_DIR)
    return instance


model = _load_model()
app = make_app(MODEL_NAME, model.predict)
