"""scikit-learn estimators saved with joblib.

A joblib file is a pickle: loading it runs whatever code it names. The platform only loads one
when the deployer passed `--trust`, which the registry records with the version.
Outputs follow skl2onnx's names so an estimator and its ONNX export answer alike:
`label` (+ `probabilities` for classifiers with predict_proba), `variable` for regressors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np

from zeroserve.runtimes.base import LoadError, entry
from zeroserve.spec import Signature, TensorSpec
from zeroserve.tensors import Tensors, datatype_of

__all__ = ["SklearnPredictor", "load"]


class SklearnPredictor:
    def __init__(self, estimator: Any) -> None:
        if not hasattr(estimator, "predict"):
            raise LoadError(f"the joblib file holds a {type(estimator).__name__}, not an estimator")
        self._est = estimator
        n_features = getattr(estimator, "n_features_in_", None)
        classes = getattr(estimator, "classes_", None)
        self._is_classifier = classes is not None
        self._has_proba = self._is_classifier and hasattr(estimator, "predict_proba")
        outputs: list[TensorSpec] = []
        if self._is_classifier:
            outputs.append(
                TensorSpec(name="label", datatype=datatype_of(np.asarray(classes)), shape=[-1])
            )
            if self._has_proba:
                outputs.append(
                    TensorSpec(
                        name="probabilities", datatype="FP64", shape=[-1, len(np.asarray(classes))]
                    )
                )
        else:
            outputs.append(TensorSpec(name="variable", datatype="FP64", shape=None))
        self.signature = Signature(
            inputs=[
                TensorSpec(
                    name="input",
                    datatype="FP64",
                    shape=[-1, int(n_features)] if n_features is not None else None,
                )
            ],
            outputs=outputs,
        )

    def predict(self, inputs: Tensors) -> Tensors:
        x = inputs["input"]
        if self._is_classifier:
            out: Tensors = {"label": np.asarray(self._est.predict(x))}
            if self._has_proba:
                out["probabilities"] = np.asarray(self._est.predict_proba(x), dtype=np.float64)
            return out
        return {"variable": np.asarray(self._est.predict(x), dtype=np.float64)}


def load(path: Path, options: dict[str, Any]) -> SklearnPredictor:
    try:
        estimator = joblib.load(entry(path, (".joblib", ".pkl", ".pickle"), "model.joblib"))
    except Exception as exc:  # a bad pickle can raise anything
        raise LoadError(f"joblib could not load the artifact: {type(exc).__name__}: {exc}") from exc
    return SklearnPredictor(estimator)
