"""The python and torch runtimes, through a real platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[2] / "examples"


class _Affine(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


# torch 2.13 deprecates TorchScript in favour of torch.export; users still ship .pt files made
# with torch.jit, which is what the torch runtime serves, so building one here must not fail.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning")
def test_torchscript_model(server: Any, tmp_path: Path) -> None:
    path = tmp_path / "affine.pt"
    module = _Affine()
    torch.jit.save(torch.jit.script(module), str(path))
    server.deploy("affine", path)
    x = np.array([[1.0, 0.0], [0.5, 2.0]], dtype=np.float32)
    body = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": x.ravel().tolist()}]
    }
    with server.client() as c:
        r = c.post("/v2/models/affine/infer", json=body)
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
    expected = module(torch.from_numpy(x)).detach().numpy()
    assert out["name"] == "output0"
    assert out["shape"] == [2, 2]
    np.testing.assert_allclose(np.array(out["data"]).reshape(2, 2), expected, rtol=1e-6)


def test_python_model_with_declared_signature(server: Any) -> None:
    server.deploy("scaler", EXAMPLES / "echo" / "model.py", "--class", "Scaler")
    with server.client() as c:
        meta = c.get("/v2/models/scaler").json()
        assert meta["platform"] == "python"
        assert meta["inputs"] == [{"name": "x", "datatype": "FP64", "shape": [-1, -1]}]
        body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}]}
        r = c.post("/v2/models/scaler/infer", json=body)
        assert r.json()["outputs"] == [
            {"name": "y", "datatype": "FP64", "shape": [1, 3], "data": [2.0, 4.0, 6.0]}
        ]
        r = c.post("/v1/models/scaler:predict", json={"instances": [[1, 2], [3, 4]]})
        assert r.json() == {"predictions": [[2.0, 4.0], [6.0, 8.0]]}
