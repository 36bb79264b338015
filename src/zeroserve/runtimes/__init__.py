"""Runtimes: the code that loads one kind of artifact and predicts on a batch.

Each runtime module imports its framework lazily, so the gateway never imports onnxruntime,
scikit-learn or torch; only the instance that loads such a model does.
"""

from zeroserve.runtimes.base import LoadError, Predictor, load_predictor

__all__ = ["LoadError", "Predictor", "load_predictor"]
