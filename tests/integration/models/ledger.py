"""A test model that records every call it completes: one line `<key> <pid>` per row in the
file named by the `log` input, after working for `work_s` seconds. The ledger shows which
requests reached an instance, and how often."""

from __future__ import annotations

import os
import time
from typing import ClassVar

import numpy as np


class Ledger:
    inputs: ClassVar = [
        {"name": "key", "datatype": "BYTES", "shape": [-1]},
        {"name": "log", "datatype": "BYTES", "shape": [-1]},
        {"name": "work_s", "datatype": "FP64", "shape": [-1]},
    ]
    outputs: ClassVar = [{"name": "key", "datatype": "BYTES", "shape": [-1]}]

    def load(self, path: str) -> None:
        pass

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(float(batch["work_s"].max()))  # stands in for a model's compute
        for key, log in zip(batch["key"], batch["log"], strict=True):
            with open(log.decode(), "a") as f:
                f.write(f"{key.decode()} {os.getpid()}\n")
        return {"key": batch["key"]}
