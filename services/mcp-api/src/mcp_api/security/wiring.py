"""How the security controls wrap the app (kept here so app.py stays a short list of layers).

/mcp, outermost first:
  ObservabilityMiddleware -> SecurityHeadersMiddleware (headers, CORS preflight)
  -> FrontDoor (Host, Origin, Content-Type) -> HeaderLimits (431) -> BearerAuthMiddleware (API key or
  OAuth JWT, then key/tenant rate limits; failures charged to the client IP: 401/403/429)
  -> BodyLimits (413, 408, JSON shape 400) -> McpTransport
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import urlparse

from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import ASGIApp

from ..auth.middleware import BearerAuthMiddleware
from ..auth.oauth import OAuthVerifier
from ..deps import Services
from ..settings import Settings
from .headers import SecurityHeadersMiddleware
from .limits import BodyLimits, HeaderLimits
from .net import TrustedProxies
from .privacy import PrivacyContext
from .retention import PurgeContext, purge_forever


@dataclass
class SecuredEndpoint:
    app: ASGIApp  # what FrontDoor wraps
    auth: BearerAuthMiddleware
    routes: list[Route] = field(default_factory=list)


def secure_mcp_endpoint(transport: ASGIApp, services: Services) -> SecuredEndpoint:
    settings = services.settings
    oauth = OAuthVerifier(settings.oauth, settings.public_url) if settings.oauth.enabled else None
    body = BodyLimits(transport, settings.limits, settings.max_request_bytes)
    auth = BearerAuthMiddleware(
        body,
        services.keys,
        oauth=oauth,
        limiter=services.limiter,
        proxies=TrustedProxies(settings.trusted_proxies),
    )
    return SecuredEndpoint(
        app=HeaderLimits(auth, settings.limits), auth=auth, routes=oauth.routes() if oauth else []
    )


def _headers_options(settings: Settings) -> dict:
    return {
        "allowed_origins": settings.allowed_origins,
        "proxies": TrustedProxies(settings.trusted_proxies),
        "limits": settings.limits,
        "public_https": urlparse(settings.public_url or "").scheme == "https",
    }


def security_middleware(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(SecurityHeadersMiddleware, **_headers_options(settings))


def security_headers(app: ASGIApp, settings: Settings) -> ASGIApp:
    """The same security headers and CORS handling as security_middleware, around one endpoint."""
    return SecurityHeadersMiddleware(app, **_headers_options(settings))


def security_lifespan_tasks(services: Services) -> list[asyncio.Task]:
    tasks = []
    interval = services.settings.retention.purge_interval_s
    if interval > 0 and services.audit is not None:
        ctx = PurgeContext(services.settings, services.store, services.audit)
        tasks.append(
            asyncio.get_running_loop().create_task(
                purge_forever(ctx, interval), name="secure-agent-retention"
            )
        )
    return tasks


def privacy_context(services: Services) -> PrivacyContext:
    assert services.audit is not None
    return PrivacyContext(services.settings, services.store, services.keys, services.audit)
