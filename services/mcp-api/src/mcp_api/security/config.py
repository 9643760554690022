"""Security sections of the settings model (imported by `mcp_api.settings`; pydantic only, no app imports).

Environment names follow the usual rule: `SECURE_AGENT_OAUTH__ISSUER`, `SECURE_AGENT_RATE_LIMITS__KEY_PER_S`,
`SECURE_AGENT_LIMITS__MAX_JSON_DEPTH`, `SECURE_AGENT_RETENTION__AUDIT_PAYLOAD_DAYS`, ...
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class OAuthSettings(BaseModel):
    """OAuth 2.1 resource server: JWT access tokens from an authorization server, beside API keys."""

    issuer: str | None = Field(
        None,
        description="Issuer (`iss`) of accepted access tokens, e.g. https://auth.example.com/. Unset: OAuth "
        "is off and only API keys are accepted.",
    )
    jwks_url: str | None = Field(
        None, description="The issuer's JWKS URL (https, or http on loopback). Required with an issuer."
    )
    authorization_servers: list[str] = Field(
        default_factory=list,
        description="Authorization servers advertised in the protected-resource metadata; default [issuer].",
    )
    audience: list[str] = Field(
        default_factory=list,
        description="Accepted `aud` values; default: this server's resource URL (public_url + /mcp).",
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256", "PS256", "EdDSA"],
        description="Accepted JWS algorithms (asymmetric only; 'none' and HMAC are never accepted).",
    )
    tenant_claim: str = Field("tenant", description="Claim naming the caller's tenant.")
    default_tenant: str | None = Field(
        None, description="Tenant for tokens without the tenant claim; unset: such tokens are refused."
    )
    scope_map: dict[str, str] = Field(
        default_factory=dict,
        description='Token scope -> secure-agent scope (e.g. {"mcp:read": "files:read"}); our own scope '
        "names are accepted as they are, other scopes are ignored.",
    )
    leeway_s: float = Field(30.0, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat.")
    jwks_cache_s: float = Field(300.0, gt=0, description="How long fetched signing keys are trusted.")
    jwks_min_refresh_s: float = Field(
        10.0, ge=0, description="An unknown key id triggers at most one JWKS refetch per this interval."
    )

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)


class RateLimitSettings(BaseModel):
    """Token buckets: `*_per_s` is the refill rate, `*_burst` the bucket size. 0 turns a bucket off."""

    enabled: bool = Field(True, description="Apply the rate limits below.")
    key_per_s: float = Field(20.0, ge=0, description="Requests per second per API key or OAuth subject.")
    key_burst: int = Field(200, ge=1, description="Burst per API key or OAuth subject.")
    tenant_per_s: float = Field(50.0, ge=0, description="Requests per second per tenant, all keys together.")
    tenant_burst: int = Field(500, ge=1, description="Burst per tenant.")
    ip_per_s: float = Field(
        2.0,
        ge=0,
        description="Unauthenticated requests (missing or bad credentials) per second per client IP.",
    )
    ip_burst: int = Field(100, ge=1, description="Burst of unauthenticated requests per client IP.")
    max_inflight_tool_calls_per_tenant: int = Field(
        32, ge=0, description="Tool calls of one tenant running at once in one process; 0 = no cap."
    )
    max_runners_per_tenant: int = Field(
        8, ge=0, description="Workspace runners one tenant may hold at once; 0 = no cap (runner backend)."
    )
    redis_prefix: str = Field("secure-agent:rl:", description="Key prefix of the buckets in Redis.")


class RequestLimitSettings(BaseModel):
    """Bounds on what one request may cost, and server timeouts against slow clients."""

    max_json_depth: int = Field(32, ge=4, le=512, description="Deepest nesting of a JSON-RPC message.")
    max_json_nodes: int = Field(
        100_000, ge=100, description="Most objects plus arrays in one message (bounds parser work)."
    )
    max_key_chars: int = Field(256, ge=16, description="Longest object key in a message.")
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="Total size of request headers; more: 431.")
    max_headers: int = Field(100, ge=10, description="Most request header fields; more: 431.")
    body_timeout_s: float = Field(
        30.0, gt=0, description="A request body must arrive within this time (slow senders get 408)."
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="A new connection must send complete request headers within this time."
    )
    keep_alive_timeout_s: int = Field(
        5, ge=1, description="Idle keep-alive connections are closed after this."
    )
    max_connections: int | None = Field(
        1000, ge=1, description="Concurrent connections per process before 503 (uvicorn limit_concurrency)."
    )
    hsts_max_age_s: int = Field(
        63_072_000, ge=0, description="Strict-Transport-Security max-age on https; 0 sends no HSTS."
    )
    cors_max_age_s: int = Field(600, ge=0, description="How long browsers may cache a CORS preflight.")


class RetentionSettings(BaseModel):
    """How long stored data is kept; a purge job (`secure-agent retention purge`, and every
    `purge_interval_s` in the server) applies it. 0 days = keep forever."""

    audit_payload_days: int = Field(
        365,
        ge=0,
        description="Audit records keep who/what/details this long; then only the hash-chained envelope "
        "(sequence, time, action) remains.",
    )
    conversations_days: int = Field(90, ge=0, description="Conversations and transcripts (with the agent).")
    purge_interval_s: float = Field(3600.0, ge=0, description="Purge job interval in the server; 0 = off.")


class PrivacySettings(BaseModel):
    pii_patterns: list[str] = Field(
        default_factory=list,
        description="Extra regular expressions (e.g. customer ids) replaced by [REDACTED:pii] in stored "
        "audit details and transcripts, besides secrets, e-mail addresses and card-like numbers.",
    )
    redact_emails: bool = Field(True, description="Replace e-mail addresses in stored free text.")
