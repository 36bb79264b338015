"""Scaling: the pure decisions (decide.py) and the pool that actuates them (pool.py)."""

from zeroserve.scaling.decide import InstanceLoad, PoolLoad, instances_to_start, instances_to_stop
from zeroserve.scaling.pool import (
    DeadlineExceeded,
    DeadlineUnmeetable,
    InstanceCpuLimit,
    InstanceCrashed,
    InstanceOutOfMemory,
    InvocationTimeout,
    Pool,
    PoolClosed,
    QueueFull,
    QueueTimeout,
    StartFailed,
)

__all__ = [
    "DeadlineExceeded",
    "DeadlineUnmeetable",
    "InstanceCpuLimit",
    "InstanceCrashed",
    "InstanceLoad",
    "InstanceOutOfMemory",
    "InvocationTimeout",
    "Pool",
    "PoolClosed",
    "PoolLoad",
    "QueueFull",
    "QueueTimeout",
    "StartFailed",
    "instances_to_start",
    "instances_to_stop",
]
