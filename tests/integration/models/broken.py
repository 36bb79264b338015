"""A test model whose load() fails: deploying it must be refused with the reason."""

from __future__ import annotations

import numpy as np


class Broken:
    def load(self, path: str) -> None:
        raise RuntimeError("weights file is corrupt")

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return batch
