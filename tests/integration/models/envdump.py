"""A test model that reports what its instance sees: its environment (os.environ and the
block it was exec'd with, /proc/self/environ), its temp dir, and a file it wrote there."""

from __future__ import annotations

import json
import os
import tempfile
from typing import ClassVar

import numpy as np


class EnvDump:
    inputs: ClassVar = [{"name": "x", "datatype": "INT64", "shape": [-1]}]
    outputs: ClassVar = [{"name": "report", "datatype": "BYTES", "shape": [-1]}]

    def load(self, path: str) -> None:
        self.loaded_with = dict(os.environ)

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with open("/proc/self/environ", "rb") as f:
            exec_environ = f.read().decode(errors="replace")
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(b"scratch")
        report = {
            "pid": os.getpid(),
            "environ": dict(os.environ),
            "loaded_with": self.loaded_with,
            "exec_environ": exec_environ,
            "tempdir": tempfile.gettempdir(),
            "tmp_file": f.name,
        }
        return {"report": np.array([json.dumps(report).encode()], dtype=object)}
