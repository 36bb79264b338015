"""The packages' exported names stay deliberate."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    ["zeroserve.instances", "zeroserve.scaling", "zeroserve.registry", "zeroserve.artifacts",
     "zeroserve.runtimes", "zeroserve.routing", "zeroserve.metering", "zeroserve.gateway",
     "zeroserve.jobs", "zeroserve.security"],
)  # fmt: skip
def test_all_names_exist(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__all__ == sorted(mod.__all__)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"
