"""Tenant names: one validator shared by keys, secrets and the audit log.

Lower-case letters, digits and dashes, starting with a letter or digit, at most 63 characters:
a name that is safe in a URL path, a file name, a Prometheus label and a DNS label alike.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_TENANT", "validate_tenant"]

DEFAULT_TENANT = "default"
_TENANT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def validate_tenant(name: str) -> str:
    """Return `name` if it is a valid tenant name, else raise ValueError naming it."""
    if not isinstance(name, str) or _TENANT.fullmatch(name) is None:
        raise ValueError(
            f"invalid tenant name {name!r}: use 1-63 lower-case letters, digits or dashes, "
            "starting with a letter or digit"
        )
    return name
