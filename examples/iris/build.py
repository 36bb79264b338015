"""Build the iris example models from scikit-learn's bundled data (nothing is downloaded).

Writes, next to this file (or into --out):
  iris.joblib  a fitted LogisticRegression (the `sklearn` runtime; needs --trust)
  iris.onnx    the same model exported with skl2onnx (the `onnx` runtime)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def build(out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000, random_state=0).fit(x, y)
    joblib_path = out / "iris.joblib"
    joblib.dump(model, joblib_path)
    # zipmap=False: probabilities as a plain [N, 3] tensor, not a list of dicts.
    onx = to_onnx(
        model,
        x[:1].astype(np.float32),
        options={id(model): {"zipmap": False}},
        target_opset=17,
    )
    onnx_path = out / "iris.onnx"
    onnx_path.write_bytes(onx.SerializeToString())
    return joblib_path, onnx_path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    for p in build(parser.parse_args().out):
        print(f"wrote {p}")
