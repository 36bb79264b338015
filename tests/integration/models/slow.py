"""A test model whose load and predict take a while, to catch instances mid-load and
mid-request. `delay_s` in the input sets how long predict blocks."""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np


class Slow:
    inputs: ClassVar = [{"name": "delay_s", "datatype": "FP64", "shape": [-1]}]
    outputs: ClassVar = [{"name": "pid", "datatype": "INT64", "shape": [-1]}]

    def load(self, path: str) -> None:
        time.sleep(1.5)

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(float(batch["delay_s"].max()))
        import os

        return {"pid": np.full(len(batch["delay_s"]), os.getpid(), dtype=np.int64)}
