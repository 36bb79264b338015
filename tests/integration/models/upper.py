"""A BYTES-in, BYTES-out test model."""

from __future__ import annotations

from typing import ClassVar

import numpy as np


class Upper:
    inputs: ClassVar = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    outputs: ClassVar = [{"name": "upper", "datatype": "BYTES", "shape": [-1]}]

    def load(self, path: str) -> None:
        pass

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = np.array(
            [t.decode("utf-8").upper().encode("utf-8") for t in batch["text"]], dtype=object
        )
        return {"upper": out}
