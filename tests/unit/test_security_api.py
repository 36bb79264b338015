"""The security package's exported names, and tenant names."""

from __future__ import annotations

import re

import pytest

import zeroserve.security as security
from zeroserve.security import validate_tenant


def test_all_names_exist_and_are_sorted() -> None:
    assert security.__all__ == sorted(security.__all__)
    for name in security.__all__:
        assert hasattr(security, name), name


@pytest.mark.parametrize("name", ["default", "a", "acme-corp", "0team", "a" * 63])
def test_valid_tenant_names(name: str) -> None:
    assert validate_tenant(name) == name


@pytest.mark.parametrize("name", ["", "-a", "Acme", "a_b", "a.b", "a" * 64, "é", "a\n"])
def test_invalid_tenant_names_name_the_value(name: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid tenant name {name!r}:")):
        validate_tenant(name)
