"""Cold starts through the fork server and from snapshot templates: same predictions as a
freshly loaded model, and a template evicted under the memory budget falls back to the
fork path without the client noticing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_iris

from tests.integration.conftest import descendants, wait_for

pytestmark = pytest.mark.integration

X, _ = load_iris(return_X_y=True)
X32 = X.astype(np.float32)


def _infer(server: Any, model: str, rows: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
    body = {
        "inputs": [{"name": "X", "datatype": "FP32", "shape": list(rows.shape),
                    "data": rows.reshape(-1).tolist()}]
    }  # fmt: skip
    with server.client() as c:
        r = c.post(f"/v2/models/{model}/infer", json=body)
    assert r.status_code == 200, r.text
    out = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in r.json()["outputs"]}
    return out, r.headers["x-zeroserve-cold-start"]


def _template_ready(server: Any, model: str) -> None:
    """Templates load in the background after a deploy; wait for the one of `model`."""
    wait_for(lambda: server.status(model)["versions"][-1]["snapshot_bytes"], timeout_s=30)


def _starts(server: Any, model: str) -> dict[str, float]:
    with server.client() as c:
        text = c.get("/metrics").text
    pattern = rf'zeroserve_cold_starts_total{{model="{model}",path="(\w+)",version="1"}} (\S+)'
    return {path: float(n) for path, n in re.findall(pattern, text)}


def test_forked_and_snapshot_instances_predict_like_a_fresh_model(
    server: Any, iris_models: dict[str, Path]
) -> None:
    fresh = ort.InferenceSession(str(iris_models["onnx"]), providers=["CPUExecutionProvider"])
    labels, probabilities = fresh.run(None, {"X": X32})
    server.deploy("iris", iris_models["onnx"])
    server.deploy("iris-snap", iris_models["onnx"], "--snapshot")
    server.deploy("iris-sk", iris_models["joblib"], "--trust", "--snapshot")
    _template_ready(server, "iris-snap")
    _template_ready(server, "iris-sk")
    for model in ("iris", "iris-snap"):
        out, cold = _infer(server, model, X32)
        assert cold == "true"
        np.testing.assert_array_equal(out["label"], labels)
        # The JSON carries FP32 values as decimals that round-trip exactly.
        np.testing.assert_array_equal(out["probabilities"].astype(np.float32), probabilities)
    assert _starts(server, "iris") == {"fork": 1.0}
    assert _starts(server, "iris-snap") == {"snapshot": 1.0}

    estimator = joblib.load(iris_models["joblib"])
    body = {"instances": X.tolist()}
    with server.client() as c:
        got = c.post("/v1/models/iris-sk:predict", json=body).json()["predictions"]
    assert [p["label"] for p in got] == estimator.predict(X).tolist()
    np.testing.assert_array_equal([p["probabilities"] for p in got], estimator.predict_proba(X))
    assert _starts(server, "iris-sk") == {"snapshot": 1.0}

    names = [name for _, name in descendants(server.proc.pid)]
    assert names.count("zs-forkserver") == 1
    assert names.count("zs-forkserv-ort") == 1  # onnx and python instances fork from it
    assert names.count("zs-template") == 2
    assert names.count("zs-instance") == 3


def test_snapshot_over_the_memory_budget_falls_back_to_the_fork_path(
    server_factory: Any, iris_models: dict[str, Path]
) -> None:
    server = server_factory("--snapshot-memory", "1")  # 1 MB: no template fits
    server.deploy("iris", iris_models["onnx"], "--snapshot", "--idle-timeout", "0.5")
    for _ in range(2):
        out, cold = _infer(server, "iris", X32[[0, 50, 100]])
        assert out["label"].tolist() == [0, 1, 2]
        assert cold == "true"
        wait_for(lambda: server.status("iris")["instances"] == 0, timeout_s=10)
    assert _starts(server, "iris") == {"fork": 2.0}
    # The template was made, found too big for the budget, and not made again.
    wait_for(lambda: "zs-template" not in [n for _, n in descendants(server.proc.pid)], 10)


def test_least_recently_used_template_is_evicted_first(
    server_factory: Any, iris_models: dict[str, Path]
) -> None:
    first = server_factory()
    first.deploy("a", iris_models["onnx"], "--snapshot", "--idle-timeout", "0.5")
    size = wait_for(lambda: first.status("a")["versions"][0]["snapshot_bytes"], timeout_s=10)
    first.stop()
    # Room for one template (and a half): deploying b evicts a, the older one.
    budget_mb = str(max(2, int(size * 1.5 / 2**20)))
    server = server_factory("--snapshot-memory", budget_mb, state_dir=first.state_dir)
    wait_for(lambda: server.status("a")["versions"][0]["snapshot_bytes"], timeout_s=10)
    server.deploy("b", iris_models["onnx"], "--snapshot", "--idle-timeout", "0.5")
    _template_ready(server, "b")
    assert server.status("a")["versions"][0]["snapshot_bytes"] is None
    out, _ = _infer(server, "b", X32[[0]])
    assert out["label"].tolist() == [0]
    out, _ = _infer(server, "a", X32[[100]])  # transparently through the fork path
    assert out["label"].tolist() == [2]
    assert _starts(server, "b") == {"snapshot": 1.0}
    assert _starts(server, "a") == {"fork": 1.0}


def test_corrupted_cached_artifact_is_refetched_by_the_next_instance(
    server_factory: Any, iris_models: dict[str, Path], tmp_path: Path
) -> None:
    # local:// is fsspec's local filesystem under another name: the platform treats it as a
    # remote store, so instances load from the per-machine cache.
    store = f"local://{tmp_path / 'bucket'}"
    server = server_factory(ZEROSERVE_ARTIFACT_STORE=store)
    server.deploy("iris", iris_models["onnx"], "--idle-timeout", "0.5")
    digest = server.status("iris")["versions"][0]["artifact"]["sha256"]
    cached = server.state_dir / "cache" / "sha256" / digest[:2] / digest
    out, _ = _infer(server, "iris", X32[[100]])
    assert out["label"].tolist() == [2]
    assert cached.read_bytes() == iris_models["onnx"].read_bytes()
    wait_for(lambda: server.status("iris")["instances"] == 0, timeout_s=10)

    cached.write_bytes(b"\0" * cached.stat().st_size)  # corrupted on disk, same size
    out, cold = _infer(server, "iris", X32[[100]])
    assert cold == "true"
    assert out["label"].tolist() == [2]
    assert cached.read_bytes() == iris_models["onnx"].read_bytes()
    assert f"cached artifact sha256:{digest} is corrupted; fetching it again" in server.log()


SENTENCES = ["zeroserve answers the first request in milliseconds", "ünïcode", ""]


def test_minilm_forked_and_snapshot_embeddings_match_a_fresh_model(
    server: Any, minilm_folder: Path
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("minilm_fresh", minilm_folder / "model.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = module.MiniLM()
    fresh.load(str(minilm_folder))
    want = fresh.predict({"text": np.array([s.encode() for s in SENTENCES], dtype=object)})

    server.deploy("minilm", minilm_folder)
    server.deploy("minilm-snap", minilm_folder, "--snapshot")
    _template_ready(server, "minilm-snap")
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": SENTENCES}]}
    with server.client() as c:
        for model in ("minilm", "minilm-snap"):
            r = c.post(f"/v2/models/{model}/infer", json=body)
            assert r.status_code == 200, r.text
            out = r.json()["outputs"][0]
            assert out["name"] == "embedding"
            assert out["shape"] == [3, 384]
            got = np.array(out["data"], dtype=np.float32).reshape(3, 384)
            assert float(np.abs(got - want["embedding"]).max()) <= 1e-5
    assert _starts(server, "minilm") == {"fork": 1.0}
    assert _starts(server, "minilm-snap") == {"snapshot": 1.0}


def test_removing_a_model_removes_its_template(server: Any, iris_models: dict[str, Path]) -> None:
    server.deploy("iris", iris_models["onnx"], "--snapshot")
    names = lambda: [n for _, n in descendants(server.proc.pid)]  # noqa: E731
    wait_for(lambda: names().count("zs-template") == 1, timeout_s=10)
    server.cli("rm", "iris")
    wait_for(lambda: "zs-template" not in names(), timeout_s=10)
    with server.client() as c:
        assert "zeroserve_snapshot_memory_bytes{" not in c.get("/metrics").text
