"""Bearer authentication in front of the MCP endpoint (pure ASGI, so SSE streams pass untouched).

API keys (`sa_...`) and, when configured, OAuth JWT access tokens; then the per-key and per-tenant
rate limits. Requests that do not authenticate are charged to their client IP's bucket instead.
"""

from __future__ import annotations

import json
import logging

from agent_runner.observability import context as log_context
from agent_runner.observability.logs import event
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.types import ASGIApp, Receive, Scope, Send

from ..observability.metrics import AUTH_FAILURES
from ..security.net import TrustedProxies
from ..security.rate_limit import RateLimiter, send_rate_limited
from .api_keys import KEY_RE, ApiKeyService
from .oauth import OAuthVerifier
from .principal import Principal, current_principal

log = logging.getLogger(__name__)

# JSON-RPC server-error range; clients show the message, the HTTP status carries the semantics.
UNAUTHORIZED_CODE = -32001
_MAX_USERS = 10_000


class BearerAuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        keys: ApiKeyService,
        realm: str = "secure-agent",
        *,
        oauth: OAuthVerifier | None = None,
        limiter: RateLimiter | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.realm = realm
        self.oauth = oauth
        self.limiter = limiter
        self.proxies = proxies or TrustedProxies([])
        # Only a test plugin sets this: requests without credentials then act as this principal.
        self.anonymous: Principal | None = None
        # The SDK's view of a principal (two pydantic models), built once per principal: it holds no
        # secret (token=""), and a Principal is immutable, so a changed key is another entry.
        self._users: dict[Principal, AuthenticatedUser] = {}

    def _user(self, principal: Principal) -> AuthenticatedUser:
        user = AuthenticatedUser(
            AccessToken(
                token="", client_id=f"{principal.tenant}/{principal.key_id}", scopes=sorted(principal.scopes)
            )
        )
        if len(self._users) >= _MAX_USERS:
            self._users.clear()
        self._users[principal] = user
        return user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        principal: Principal | None
        if header is None:
            principal = self.anonymous
            if principal is None:
                await self._reject(
                    scope, send, "missing", "Missing Authorization header: send 'Authorization: Bearer <API key>'."
                )
                return
        else:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                await self._reject(scope, send, "malformed", "Authorization header must be 'Bearer <API key>'.")
                return
            token = token.strip()
            if self.oauth is None or token.startswith("sa_"):
                principal, check = await self.keys.verify(token), "api_key"
                message = "API key is invalid or revoked; create one with 'secure-agent keys create'."
            else:
                principal, check = await self.oauth.verify_with_reason(token)
                message = "Access token is invalid, expired or not issued for this server; get a new one."
            if principal is None:
                # The key id names the key without revealing it: it helps find a revoked key's owner.
                match = KEY_RE.match(token)
                await self._reject(
                    scope, send, "invalid", message, key_id=match.group(1) if match else None, check=check
                )
                return
            if not principal.scopes:
                await self._reject(
                    scope, send, "invalid", "The access token carries no scope this server knows.",
                    check="insufficient_scope", status=403,
                )  # fmt: skip
                return
        if self.limiter is not None:
            decision = await self.limiter.check_principal(principal.tenant, principal.key_id)
            if not decision.allowed:
                event(log, logging.WARNING, "rate limited", limit=decision.limit, outcome="rate_limited")
                await send_rate_limited(send, decision)
                return
        # The SDK binds multi-round-trip request state to the authenticated client, so tell it too.
        user = self._users.get(principal)
        if user is None:
            user = self._user(principal)
        # Log lines and spans of this request name the tenant by its hash only.
        log_context.annotate(tenant=log_context.hash_tenant(principal.tenant))
        principal_token = current_principal.set(principal)
        user_token = auth_context_var.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            auth_context_var.reset(user_token)
            current_principal.reset(principal_token)

    async def _reject(
        self,
        scope: Scope,
        send: Send,
        reason: str,
        message: str,
        key_id: str | None = None,
        check: str | None = None,
        status: int = 401,
    ) -> None:
        if self.limiter is not None:
            # Unauthenticated traffic is charged to the client's address: brute force and floods stop here.
            decision = await self.limiter.check_ip(self.proxies.client_ip(scope))
            if not decision.allowed:
                event(log, logging.WARNING, "rate limited", limit=decision.limit, outcome="rate_limited")
                await send_rate_limited(send, decision)
                return
        AUTH_FAILURES.labels(reason=reason).inc()
        event(
            log, logging.WARNING, "authentication failed", reason=reason, key_id=key_id, check=check,
            outcome="denied",
        )  # fmt: skip
        if status == 403:
            error = "insufficient_scope"
        else:
            error = "invalid_request" if reason in ("missing", "malformed") else "invalid_token"
        body = json.dumps(
            {"jsonrpc": "2.0", "id": None, "error": {"code": UNAUTHORIZED_CODE, "message": message}}
        ).encode()
        challenge = f'Bearer realm="{self.realm}", error="{error}", error_description="{message}"'
        if self.oauth is not None:
            # RFC 9728 §5.1: where a client finds the authorization server for this resource.
            challenge += f', resource_metadata="{self.oauth.metadata_url}"'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", challenge.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None
