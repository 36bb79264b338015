"""Prometheus metrics (and later the cost model, budgets and audit log)."""

from zeroserve.metering.metrics import Metrics

__all__ = ["Metrics"]
