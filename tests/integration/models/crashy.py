"""A test model that kills its own process on x < 0 (as a segfaulting native library
would) and raises on x == 0."""

from __future__ import annotations

import os
import signal
from typing import ClassVar

import numpy as np


class Crashy:
    inputs: ClassVar = [{"name": "x", "datatype": "INT64", "shape": [-1]}]

    def load(self, path: str) -> None:
        pass

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if int(batch["x"][0]) < 0:
            os.kill(os.getpid(), signal.SIGKILL)
        if int(batch["x"][0]) == 0:
            raise ValueError("x must not be zero")
        return {"y": batch["x"] * 2}
