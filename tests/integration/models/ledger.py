"""A test model that records every call it completes: one line `<key> <pid> <attempt>` per
row in the file named by the `log` input, after working for `work_s` seconds. The ledger shows
which requests reached an instance, and how often.

It also has a side effect made idempotent the way a real model would: for each request with an
idempotency key (every job has one), it creates `<log>.effects/<key>` exclusively, so a
request that runs again (a job retried after a crash) does not repeat it."""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import numpy as np


def _per_row(requests: list[dict[str, Any]], rows: int) -> list[dict[str, Any]]:
    out = [r for r in requests for _ in range(int(r.get("rows", 1)))]
    return out if len(out) == rows else [{}] * rows


class Ledger:
    inputs: ClassVar = [
        {"name": "key", "datatype": "BYTES", "shape": [-1]},
        {"name": "log", "datatype": "BYTES", "shape": [-1]},
        {"name": "work_s", "datatype": "FP64", "shape": [-1]},
    ]
    outputs: ClassVar = [{"name": "key", "datatype": "BYTES", "shape": [-1]}]

    def load(self, path: str) -> None:
        pass

    def predict(
        self, batch: dict[str, np.ndarray], requests: list[dict[str, Any]]
    ) -> dict[str, np.ndarray]:
        time.sleep(float(batch["work_s"].max()))  # stands in for a model's compute
        rows = _per_row(requests, len(batch["key"]))
        for key, log, request in zip(batch["key"], batch["log"], rows, strict=True):
            path = log.decode()
            with open(path, "a") as f:
                f.write(f"{key.decode()} {os.getpid()} {request.get('attempt', 0)}\n")
            idempotency_key = request.get("idempotency_key")
            if idempotency_key:
                effects = path + ".effects"
                os.makedirs(effects, exist_ok=True)
                try:
                    fd = os.open(os.path.join(effects, idempotency_key), os.O_CREAT | os.O_EXCL)
                    os.close(fd)
                except FileExistsError:
                    pass  # done by an earlier attempt: not again
        return {"key": batch["key"]}
