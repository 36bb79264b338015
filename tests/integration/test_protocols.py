"""Standard clients work unmodified: tritonclient (JSON, binary, sync, aio), the kserve REST
client (V1 and V2) and plain httpx, against iris ONNX and iris joblib, with predictions
checked against scikit-learn's own."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from sklearn.datasets import load_iris

pytestmark = pytest.mark.integration

X, Y = load_iris(return_X_y=True)
SAMPLE = X[::10]  # 15 rows across the three classes


@pytest.fixture(scope="module")
def expected(iris_models: dict[str, Path]) -> np.ndarray:
    model = joblib.load(iris_models["joblib"])
    labels: np.ndarray = model.predict(SAMPLE)
    return labels


@pytest.fixture
def iris_server(server: Any, iris_models: dict[str, Path]) -> Any:
    assert server.deploy("iris", iris_models["onnx"]) == 1
    assert server.deploy("iris-sk", iris_models["joblib"], "--trust") == 1
    return server


def _triton_inputs(datatype: str, binary: bool) -> list[Any]:
    data = SAMPLE.astype(np.float32 if datatype == "FP32" else np.float64)
    inp = triton.InferInput("X" if datatype == "FP32" else "input", list(data.shape), datatype)
    inp.set_data_from_numpy(data, binary_data=binary)
    return [inp]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_sync(iris_server: Any, expected: np.ndarray, binary: bool) -> None:
    client = triton.InferenceServerClient(iris_server.url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    meta = client.get_model_metadata("iris")
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert {m["name"] for m in client.get_model_repository_index()} == {"iris", "iris-sk"}

    outputs = [
        triton.InferRequestedOutput("label", binary_data=binary),
        triton.InferRequestedOutput("probabilities", binary_data=binary),
    ]
    result = client.infer("iris", _triton_inputs("FP32", binary), outputs=outputs, request_id="r-1")
    np.testing.assert_array_equal(result.as_numpy("label"), expected)
    assert result.as_numpy("probabilities").shape == (len(SAMPLE), 3)
    assert result.get_response()["id"] == "r-1"
    assert result.get_response()["model_name"] == "iris"

    # Default outputs (none requested): tritonclient asks for binary_data_output.
    sk = client.infer("iris-sk", _triton_inputs("FP64", binary), model_version="1")
    np.testing.assert_array_equal(sk.as_numpy("label"), expected)
    client.close()


def test_tritonclient_aio(iris_server: Any, expected: np.ndarray) -> None:
    async def run() -> None:
        client = triton_aio.InferenceServerClient(iris_server.url.removeprefix("http://"))
        try:
            assert await client.is_server_live()
            assert await client.is_model_ready("iris")
            for binary in (False, True):
                result = await client.infer(
                    "iris",
                    _triton_inputs("FP32", binary),
                    outputs=[triton_aio.InferRequestedOutput("label", binary_data=binary)],
                )
                np.testing.assert_array_equal(result.as_numpy("label"), expected)
        finally:
            await client.close()

    asyncio.run(run())


def test_kserve_rest_client_v1_and_v2(iris_server: Any, expected: np.ndarray) -> None:
    async def run() -> None:
        v1 = InferenceRESTClient(RESTConfig(protocol="v1", timeout=60))
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        try:
            assert await v1.is_server_live(iris_server.url)
            assert await v1.is_model_ready(iris_server.url, "iris-sk")
            assert await v2.is_server_live(iris_server.url)
            assert await v2.is_server_ready(iris_server.url)
            assert await v2.is_model_ready(iris_server.url, "iris")

            body = {"instances": SAMPLE.tolist()}
            got = await v1.infer(iris_server.url, body, model_name="iris-sk")
            assert [p["label"] for p in got["predictions"]] == expected.tolist()

            inp = InferInput("X", list(SAMPLE.shape), "FP32")
            inp.set_data_from_numpy(SAMPLE.astype(np.float32), binary_data=False)
            res = await v2.infer(iris_server.url, InferRequest("iris", [inp]), model_name="iris")
            labels = next(o for o in res.outputs if o.name == "label")
            np.testing.assert_array_equal(labels.as_numpy(), expected)

            inp_bin = InferInput("X", list(SAMPLE.shape), "FP32")
            inp_bin.set_data_from_numpy(SAMPLE.astype(np.float32), binary_data=True)
            res = await v2.infer(
                iris_server.url, InferRequest("iris", [inp_bin]), model_name="iris"
            )
            labels = next(o for o in res.outputs if o.name == "label")
            np.testing.assert_array_equal(labels.as_numpy(), expected)
        finally:
            await v1.close()
            await v2.close()

    asyncio.run(run())


def test_httpx_v2_and_v1(iris_server: Any, expected: np.ndarray) -> None:
    with iris_server.client() as c:
        body = {
            "id": "abc",
            "parameters": {"custom": 1},
            "model_name": "iris",
            "inputs": [
                {"name": "X", "datatype": "FP32", "shape": list(SAMPLE.shape),
                 "data": SAMPLE.tolist()}  # nested data is allowed as well as flat
            ],
        }  # fmt: skip
        r = c.post("/v2/models/iris/versions/1/infer", json=body)
        assert r.status_code == 200, r.text
        assert r.headers["content-length"] == str(len(r.content))
        doc = r.json()
        assert doc["id"] == "abc"
        assert doc["model_version"] == "1"
        label = next(o for o in doc["outputs"] if o["name"] == "label")
        assert label["datatype"] == "INT64"
        assert label["data"] == expected.tolist()

        r = c.post("/v1/models/iris:predict", json={"inputs": SAMPLE.tolist()})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"]["label"] == expected.tolist()

        assert c.get("/v1/models/iris").json() == {"name": "iris", "ready": True}
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.post("/v2/repository/index").status_code == 200


def test_bytes_tensors_round_trip(server: Any) -> None:
    """BYTES in, BYTES out, through JSON and the binary extension (Python runtime model)."""
    model = Path(__file__).parent / "models" / "upper.py"
    server.deploy("upper", model)
    words = ["zero", "serve", "ünï"]
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    for binary in (False, True):
        inp = triton.InferInput("text", [3], "BYTES")
        inp.set_data_from_numpy(np.array(words, dtype=object), binary_data=binary)
        out = triton.InferRequestedOutput("upper", binary_data=binary)
        result = client.infer("upper", [inp], outputs=[out])
        got = [b.decode() if isinstance(b, bytes) else b for b in result.as_numpy("upper")]
        assert got == [w.upper() for w in words]
    client.close()
