"""create_app(settings): the FastAPI application serving /mcp and the service endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .agent.providers import preload as preload_providers
from .bootstrap import banner, ensure_dev_key
from .deps import Services, build_services
from .http.service import router as service_router
from .mcp.fastlane import FastLane
from .mcp.request_checks import FrontDoor
from .mcp.server import build_mcp_server
from .mcp.transport import McpTransport
from .observability.http import ObservabilityMiddleware
from .observability.instrument import InstrumentedRunners, instrument_store, probe_forever
from .observability.logging import apply_secrets, setup_logging
from .observability.runtime import freeze_startup_heap, unfreeze_heap
from .observability.tracing import setup_tracing
from .plugins import PluginContext, load_plugins
from .security.wiring import (
    secure_mcp_endpoint,
    security_headers,
    security_lifespan_tasks,
    security_middleware,
)
from .settings import Settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, services: Services | None = None, announce: bool = False
) -> FastAPI:
    settings = settings or Settings()
    apply_secrets(settings)
    setup_tracing(settings)
    services = services or build_services(settings)
    instrument_store(services.store)
    if not isinstance(services.runners, InstrumentedRunners):
        services.runners = InstrumentedRunners(services.runners, capacity=settings.runner.max_runners)
    mcp = build_mcp_server(services)
    transport = McpTransport(mcp, settings)
    # Plain tools/call requests skip the SDK's per-request transport machinery (mcp/fastlane.py).
    lane = FastLane(transport, mcp, legacy_stateless=transport.stateless, enabled=settings.fast_lane)
    # API keys + OAuth, rate limits, header/body limits around it (security/wiring.py).
    secured = secure_mcp_endpoint(lane, services)
    auth = secured.auth
    services.auth = auth
    load_plugins(settings.plugins, PluginContext(mcp=mcp, settings=settings, auth=auth))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Here, not earlier: uvicorn and gunicorn configure their loggers after the app is built.
        setup_logging(settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await services.store.create_schema()
        if services.profiles is not None:  # loaded before the first request, followed until shutdown
            await services.profiles.start()
        # Before the heap is frozen and before the first request: see agent/providers/preload.
        await asyncio.to_thread(preload_providers, {p.kind for p in settings.agent.providers.values()})
        dev = await ensure_dev_key(settings, services.keys)
        if announce:
            print(banner(settings, dev), file=sys.stdout, flush=True)
        probe = asyncio.get_running_loop().create_task(
            probe_forever(services, settings.metrics.probe_interval_s), name="secure-agent-readiness-probe"
        )
        security_tasks = security_lifespan_tasks(services)
        frozen = freeze_startup_heap(settings.gc_freeze)  # observability/runtime.py: p99 and CPU
        async with transport.running():
            try:
                yield
            finally:
                if frozen:
                    unfreeze_heap()
                for task in security_tasks:
                    task.cancel()
                await asyncio.gather(*security_tasks, return_exceptions=True)
                probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probe
                if services.profiles is not None:
                    await services.profiles.stop()
                await services.aclose()

    app = SecureAgentApp(
        title="secure-agent",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.services = services
    app.state.mcp = mcp
    app.state.fast_lane = lane
    app.include_router(service_router)
    # Serves /metrics; the HTTP metrics themselves are recorded by ObservabilityMiddleware.
    Instrumentator().expose(app, include_in_schema=False)
    # A Route with an ASGI endpoint passes the raw scope through, so SSE streams are not buffered.
    front = FrontDoor(secured.app, settings.allowed_hosts, settings.allowed_origins)
    app.router.routes.extend(secured.routes)  # RFC 9728 metadata when OAuth is configured
    app.router.routes.append(Route("/mcp", endpoint=front, methods=["GET", "POST", "DELETE"]))
    security_middleware(app, settings)  # security headers and CORS, inside the observability layer
    # Outermost: request id, HTTP span and access line around everything, 401s and 421s included.
    app.add_middleware(ObservabilityMiddleware, access_log=settings.logging.access_log)
    # /mcp itself skips FastAPI's stack (routing, exception and telemetry layers: ~8 % of a tools/call)
    # but keeps the same layers of ours, in the same order.
    app.mcp_endpoint = ObservabilityMiddleware(
        security_headers(front, settings), access_log=settings.logging.access_log
    )
    return app


class SecureAgentApp(FastAPI):
    """FastAPI, except that a request for exactly /mcp goes straight to its own ASGI layers (set in
    create_app). Any other path, a prefixed one included, goes through FastAPI, whose /mcp route
    reaches the same layers."""

    mcp_endpoint: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/mcp" and self.mcp_endpoint is not None:
            await self.mcp_endpoint(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
