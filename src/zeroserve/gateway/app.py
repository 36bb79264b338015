"""The ASGI app: V2, V1 and native routes over one `Platform`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from zeroserve.gateway import admin, jobs, native, v1, v2
from zeroserve.gateway.auth import AuthMiddleware, Security
from zeroserve.gateway.errors import exception_handlers
from zeroserve.gateway.idempotency import Idempotency
from zeroserve.gateway.openapi import DOCS_HTML, openapi_document
from zeroserve.gateway.responses import json_response
from zeroserve.jobs import SqliteJobQueue
from zeroserve.jobs.service import JobService
from zeroserve.platform import Platform
from zeroserve.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings, platform: Platform | None = None) -> Starlette:
    document = openapi_document(auth=settings.auth_required)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    security = Security.open(settings.state_dir, settings.auth_required)

    async def openapi(request: Request) -> Response:
        return json_response(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(DOCS_HTML)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        core = platform or Platform(settings)
        app.state.platform = core
        app.state.security = security
        app.state.idempotency = Idempotency(core.settings.state_dir / "idempotency.db")
        app.state.jobs = JobService(core, SqliteJobQueue(core.settings.jobs_path))
        await core.start()
        await app.state.jobs.start()
        try:
            yield
        finally:
            await app.state.jobs.close()
            await core.close()
            app.state.idempotency.close()
            security.close()

    routes = [
        *v2.routes,
        *v1.routes,
        *native.routes,
        *jobs.routes,
        *admin.routes,
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers=exception_handlers,
        lifespan=lifespan,
        middleware=[Middleware(AuthMiddleware, security=security)],
    )
