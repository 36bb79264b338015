"""Gateway: the ASGI app that speaks V2, V1 and the native API over the platform core."""

from zeroserve.gateway.app import create_app

__all__ = ["create_app"]
