"""Gateway: the ASGI app that speaks V2, V1 and the native API over the platform core.

`create_app` is loaded on first use, so importing a codec (as the job runner does) does not
load the whole app."""

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from zeroserve.gateway.app import create_app

        return create_app
    raise AttributeError(f"module 'zeroserve.gateway' has no attribute {name!r}")
