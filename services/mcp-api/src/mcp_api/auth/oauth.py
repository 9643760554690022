"""OAuth 2.1 resource server: JWT access tokens checked against the issuer's JWKS, and the RFC 9728
protected-resource metadata that tells clients (Claude, Cursor, ...) where to get a token.

A token is accepted when its signature verifies with a key from the issuer's JWKS (asymmetric
algorithms only), `iss` is the configured issuer, `aud` names this server's resource URL
(`public_url` + `/mcp`, RFC 8707), and `exp` (required), `nbf` and `iat` hold. Its scopes (`scope`
string or `scp` list) map onto secure-agent scopes; the tenant comes from a configured claim.
API keys keep working beside it: a bearer token that looks like `sa_...` goes to the API-key
verifier, anything else to this one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlparse

import httpx
import jwt
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.shared.auth import ProtectedResourceMetadata
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..security.config import OAuthSettings
from .principal import TENANT_RE, Principal
from .scopes import ALL_SCOPES

log = logging.getLogger(__name__)

ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MAX_TOKEN_CHARS = 16 * 1024
MAX_JWKS_BYTES = 512 * 1024


class OAuthConfigError(ValueError):
    pass


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def resource_url(public_url: str | None) -> str:
    """This server's protected resource (what `aud` must name): the public /mcp URL."""
    if not public_url:
        raise OAuthConfigError(
            "OAuth needs SECURE_AGENT_PUBLIC_URL (the https URL clients use, e.g. https://mcp.example.com): "
            "it is the token audience and appears in the protected-resource metadata"
        )
    parsed = urlparse(public_url)
    if parsed.scheme != "https" and not (parsed.scheme == "http" and _is_loopback(public_url)):
        raise OAuthConfigError(
            f"SECURE_AGENT_PUBLIC_URL must be https for OAuth (http only on loopback), not {public_url!r}"
        )
    return f"{public_url.rstrip('/')}/mcp"


class OAuthVerifier:
    """Verifies JWT access tokens. `verify` returns a Principal or None (no reason leaks to the caller;
    `last_reason` is kept for the log line)."""

    def __init__(self, settings: OAuthSettings, public_url: str | None) -> None:
        if not settings.issuer or not settings.jwks_url:
            raise OAuthConfigError(
                "OAuth needs both SECURE_AGENT_OAUTH__ISSUER and SECURE_AGENT_OAUTH__JWKS_URL"
            )
        if urlparse(settings.jwks_url).scheme != "https" and not _is_loopback(settings.jwks_url):
            raise OAuthConfigError("SECURE_AGENT_OAUTH__JWKS_URL must be https (http only on loopback)")
        unsafe = sorted(set(settings.algorithms) - ASYMMETRIC)
        if unsafe:
            raise OAuthConfigError(
                f"OAuth algorithms {unsafe} are not allowed; use asymmetric ones ({sorted(ASYMMETRIC)})"
            )
        self.settings = settings
        self.resource = resource_url(public_url)
        self.audience = list(settings.audience) or [self.resource]
        self.metadata_url = str(build_resource_metadata_url(self.resource))  # type: ignore[arg-type]
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()

    # --- JWKS -------------------------------------------------------------------------------------
    async def _fetch(self) -> None:
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as client:
            response = await client.get(self.settings.jwks_url)  # type: ignore[arg-type]
            response.raise_for_status()
            if len(response.content) > MAX_JWKS_BYTES:
                raise ValueError("JWKS document too large")
            data = response.json()
        keys: dict[str, jwt.PyJWK] = {}
        for entry in data.get("keys", []):
            if entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK.from_dict(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # unsupported key types are skipped, not fatal
            keys[entry.get("kid") or ""] = key
        self._keys = keys
        self._fetched_at = time.monotonic()

    async def _key_for(self, kid: str | None) -> jwt.PyJWK | None:
        kid = kid or ""
        now = time.monotonic()
        stale = now - self._fetched_at > self.settings.jwks_cache_s
        if kid in self._keys and not stale:
            return self._keys[kid]
        # Unknown kid (key rotation) or stale cache: refetch, but at most once per jwks_min_refresh_s,
        # so random kids cannot turn this server into a request amplifier against the issuer.
        async with self._lock:
            if (
                self._last_attempt < now
                and time.monotonic() - self._last_attempt >= self.settings.jwks_min_refresh_s
            ):
                self._last_attempt = time.monotonic()
                try:
                    await self._fetch()
                except Exception as exc:  # network/JSON errors: keep the keys we have, refuse unknown ones
                    log.warning("could not fetch the OAuth JWKS from %s: %s", self.settings.jwks_url, exc)
        return self._keys.get(kid)

    # --- tokens -------------------------------------------------------------------------------------
    async def verify(self, token: str) -> Principal | None:
        principal, _ = await self.verify_with_reason(token)
        return principal

    async def verify_with_reason(self, token: str) -> tuple[Principal | None, str]:
        """The principal, or None and a short reason for the log (never shown to the caller)."""
        if len(token) > MAX_TOKEN_CHARS:
            return None, "too_large"
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None, "malformed"
        alg = header.get("alg")
        if alg not in self.settings.algorithms:
            return None, "algorithm"
        key = await self._key_for(header.get("kid"))
        if key is None:
            return None, "unknown_key"
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            return None, "expired"
        except jwt.InvalidAudienceError:
            return None, "audience"
        except jwt.InvalidIssuerError:
            return None, "issuer"
        except jwt.InvalidSignatureError:
            return None, "signature"
        except jwt.PyJWTError:
            return None, "invalid"
        tenant = claims.get(self.settings.tenant_claim, self.settings.default_tenant)
        if not isinstance(tenant, str) or not TENANT_RE.match(tenant):
            return None, "tenant"
        subject = str(claims.get("sub") or claims.get("client_id") or "unknown")[:128]
        principal = Principal(
            tenant=tenant,
            key_id=f"oauth:{subject}",
            scopes=frozenset(self.map_scopes(claims)),
            auth_method="oauth",
        )
        return principal, "ok"

    def map_scopes(self, claims: dict[str, Any]) -> set[str]:
        raw: list[str] = []
        scope = claims.get("scope")
        if isinstance(scope, str):
            raw += scope.split()
        scp = claims.get("scp")
        if isinstance(scp, list):
            raw += [s for s in scp if isinstance(s, str)]
        elif isinstance(scp, str):
            raw += scp.split()
        mapped = set()
        for item in raw:
            target = self.settings.scope_map.get(item, item)
            if target in ALL_SCOPES:
                mapped.add(target)
        return mapped

    # --- RFC 9728 --------------------------------------------------------------------------------------
    def metadata(self) -> dict:
        servers = self.settings.authorization_servers or [self.settings.issuer]
        document = ProtectedResourceMetadata(
            resource=self.resource,  # type: ignore[arg-type]
            authorization_servers=servers,  # type: ignore[arg-type]
            scopes_supported=sorted(set(ALL_SCOPES) | set(self.settings.scope_map)),
            bearer_methods_supported=["header"],
            resource_name="secure-agent",
            resource_signing_alg_values_supported=None,
        )
        return document.model_dump(mode="json", exclude_none=True)

    def routes(self) -> list[Route]:
        """`/.well-known/oauth-protected-resource/mcp` (RFC 9728 §3.1, the URL the challenge names) and
        the root variant some clients try first."""
        body = self.metadata()

        async def handler(_: Request) -> Response:
            return JSONResponse(body, headers={"cache-control": "public, max-age=3600"})

        path = urlparse(self.metadata_url).path
        paths = dict.fromkeys([path, "/.well-known/oauth-protected-resource"])
        return [Route(p, endpoint=handler, methods=["GET"]) for p in paths]
