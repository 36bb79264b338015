"""Instances: isolated worker processes, their IPC framing, and the backends that start them."""

from zeroserve.instances.backend import (
    Backend,
    Instance,
    InstanceDied,
    LimitExceeded,
    ModelError,
    StartError,
    StartInfo,
)
from zeroserve.instances.local import LocalBackend
from zeroserve.instances.spec import InstanceSpec

__all__ = [
    "Backend",
    "Instance",
    "InstanceDied",
    "InstanceSpec",
    "LimitExceeded",
    "LocalBackend",
    "ModelError",
    "StartError",
    "StartInfo",
]
