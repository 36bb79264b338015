"""A test model that allocates (and touches) `mb` megabytes per request, to go over its
instance's memory limit on demand; answers with its pid. With LOAD_MB in its environment,
load() allocates that much."""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np


class MemHog:
    inputs: ClassVar = [{"name": "mb", "datatype": "INT64", "shape": [-1]}]
    outputs: ClassVar = [{"name": "pid", "datatype": "INT64", "shape": [-1]}]

    def load(self, path: str) -> None:
        self.weights = np.ones(int(os.environ.get("LOAD_MB", "0")) * 1024 * 1024, dtype=np.uint8)

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        block = np.ones(int(batch["mb"][0]) * 1024 * 1024, dtype=np.uint8)
        assert block[-1] == 1
        return {"pid": np.full(len(batch["mb"]), os.getpid(), dtype=np.int64)}
