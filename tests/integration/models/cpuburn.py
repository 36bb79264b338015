"""A test model that burns `cpu_s` seconds of CPU time per request (a busy loop), to go
over its instance's CPU-time limit on demand; answers with its pid."""

from __future__ import annotations

import os
import time
from typing import ClassVar

import numpy as np


class CpuBurn:
    inputs: ClassVar = [{"name": "cpu_s", "datatype": "FP64", "shape": [-1]}]
    outputs: ClassVar = [{"name": "pid", "datatype": "INT64", "shape": [-1]}]

    def load(self, path: str) -> None:
        pass

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        until = time.process_time() + float(batch["cpu_s"][0])
        while time.process_time() < until:
            pass
        return {"pid": np.full(len(batch["cpu_s"]), os.getpid(), dtype=np.int64)}
