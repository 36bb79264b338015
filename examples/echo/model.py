"""A Python-runtime model: any class with load(path) and predict(batch).

`predict` gets a dict of named numpy arrays whose first dimension is the batch, and returns
a dict of named arrays (or one array). Declaring `inputs`/`outputs` lets the gateway validate
requests and lets V2 clients read the model's metadata.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np


class Scaler:
    inputs: ClassVar = [{"name": "x", "datatype": "FP64", "shape": [-1, -1]}]
    outputs: ClassVar = [{"name": "y", "datatype": "FP64", "shape": [-1, -1]}]

    def load(self, path: str) -> None:
        self.factor = 2.0

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": batch["x"] * self.factor}
