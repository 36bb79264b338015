"""A test model that reports the size of the batch it was called with, after a short wait
(long enough for concurrent requests to pile up behind it)."""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np


class BatchSize:
    inputs: ClassVar = [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]

    def load(self, path: str) -> None:
        pass

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(0.05)
        x = batch["x"]
        return {"y": x * 2, "rows": np.full(len(x), len(x), dtype=np.int64)}
