"""Security headers on every response, and CORS for browser-based MCP clients.

* `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` and a
  `Content-Security-Policy` that lets nothing load (this server serves JSON and event streams only);
  `Cache-Control: no-store` unless a handler chose otherwise.
* `Strict-Transport-Security` when the request came over https: directly, or as a trusted proxy's
  `X-Forwarded-Proto` says, or always when the configured public URL is https.
* No `Server` banner (uvicorn's is switched off where the server starts; any left is removed here).
* CORS: origins in `SECURE_AGENT_ALLOWED_ORIGINS` (same `name:*` patterns as the Origin check) get
  preflights answered and `Mcp-Session-Id`, `MCP-Protocol-Version`, `WWW-Authenticate`, `Retry-After`
  and `X-Request-ID` exposed. No credentials mode: MCP clients send a bearer header, not cookies.
  The protected-resource metadata is public and readable from any origin.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..mcp.request_checks import matches
from .config import RequestLimitSettings
from .net import TrustedProxies

ALLOWED_METHODS = b"GET, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = (
    "authorization", "content-type", "accept", "mcp-session-id", "mcp-protocol-version", "mcp-method",
    "mcp-name", "last-event-id", "traceparent", "tracestate", "x-request-id",
)  # fmt: skip
EXPOSED_HEADERS = b"Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate, Retry-After, X-Request-ID"
STATIC_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
PUBLIC_PREFIX = "/.well-known/"


class SecurityHeadersMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_origins: list[str],
        proxies: TrustedProxies,
        limits: RequestLimitSettings,
        public_https: bool = False,
    ) -> None:
        self.app = app
        self.allowed_origins = list(allowed_origins)
        self.proxies = proxies
        self.hsts = (
            f"max-age={limits.hsts_max_age_s}; includeSubDomains".encode() if limits.hsts_max_age_s else None
        )
        self.max_age = str(limits.cors_max_age_s).encode()
        self.public_https = public_https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        path = scope.get("path", "")
        public = path.startswith(PUBLIC_PREFIX)
        origin_ok = origin is not None and (public or matches(origin, self.allowed_origins))
        https = self.public_https or self.proxies.is_https(scope)
        if (
            scope.get("method") == "OPTIONS"
            and origin is not None
            and _header(scope, b"access-control-request-method")
        ):
            await self._preflight(scope, send, origin if origin_ok else None, https)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                present = {k.lower() for k, _ in headers}
                headers += [h for h in STATIC_HEADERS if h[0] not in present]
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                if https and self.hsts:
                    headers.append((b"strict-transport-security", self.hsts))
                if origin_ok:
                    headers += [
                        (b"access-control-allow-origin", b"*" if public else origin.encode("latin-1")),
                        (b"access-control-expose-headers", EXPOSED_HEADERS),
                        (b"vary", b"Origin"),
                    ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _preflight(self, scope: Scope, send: Send, origin: str | None, https: bool) -> None:
        headers = list(STATIC_HEADERS) + [(b"vary", b"Origin"), (b"content-length", b"0")]
        if https and self.hsts:
            headers.append((b"strict-transport-security", self.hsts))
        if origin is None:
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        requested = (_header(scope, b"access-control-request-headers") or "").lower()
        allowed = [h.strip() for h in requested.split(",") if h.strip() in ALLOWED_HEADERS]
        headers += [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", ALLOWED_METHODS),
            (b"access-control-allow-headers", ", ".join(allowed or ALLOWED_HEADERS).encode()),
            (b"access-control-max-age", self.max_age),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None
