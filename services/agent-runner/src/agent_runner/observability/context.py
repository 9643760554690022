"""Per-request log context: request id, hashed tenant, MCP method, tool — carried by a ContextVar.

The outermost HTTP layer `bind`s a fresh context; inner layers either `bind` a narrower copy for
their own scope (the MCP method, a tool call) or `annotate` the request's context in place (the
auth layer learns the tenant, and the request's access-log line should show it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace

from .redaction import redact_text

REQUEST_ID_HEADER = "x-request-id"
TENANT_HEADER = "x-secure-agent-tenant"
MCP_METHOD_HEADER = "x-secure-agent-mcp-method"
TOOL_HEADER = "x-secure-agent-tool"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")


@dataclass
class LogContext:
    request_id: str | None = None
    tenant: str | None = None  # always the hash, never the name
    mcp_method: str | None = None
    tool: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_current: ContextVar[LogContext | None] = ContextVar("secure_agent_log_context", default=None)


def current() -> LogContext | None:
    return _current.get()


@contextmanager
def bind(**values: str | None) -> Iterator[LogContext]:
    """A new context (a copy of the current one with `values` set) for the duration of the block."""
    base = _current.get() or LogContext()
    ctx = replace(base, **{k: v for k, v in values.items() if v is not None})
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def annotate(**values: str | None) -> None:
    """Set fields on the current context in place, so the enclosing layers' log lines show them."""
    ctx = _current.get()
    if ctx is None:
        return
    for key, value in values.items():
        if value is not None:
            setattr(ctx, key, value)


def new_request_id() -> str:
    # 32 hex digits of the kernel's randomness, as uuid4().hex looked, without building a UUID (4x cheaper).
    return os.urandom(16).hex()


def accept_request_id(value: str | None) -> str:
    """The caller's request id when it is a short, safe token that redaction would leave alone (it
    goes into every log line of the request and back in X-Request-ID); a fresh one otherwise."""
    if value and _SAFE_ID.match(value) and redact_text(value) == value:
        return value
    return new_request_id()


def safe_label(value: str | None) -> str | None:
    """A header value that may go into a log field as is (short, no spaces or quotes)."""
    return value if value and _SAFE_ID.match(value) else None


_tenant_key = b"secure-agent"
# Every authenticated request hashes its tenant; there are few tenants, so each is hashed once per key.
_tenant_hashes: dict[str, str] = {}
_TENANT_HASHES_MAX = 4096


def set_tenant_hash_key(key: str | bytes | None) -> None:
    """The HMAC key for tenant hashes; set a secret one so hashes cannot be reversed by guessing names."""
    global _tenant_key
    _tenant_key = (key.encode() if isinstance(key, str) else key) or b"secure-agent"
    _tenant_hashes.clear()


def hash_tenant(tenant: str) -> str:
    """Stable, non-reversible tenant id for logs, spans and labels: 16 hex chars of HMAC-SHA256."""
    hashed = _tenant_hashes.get(tenant)
    if hashed is None:
        key = _tenant_key
        hashed = hmac.new(key, tenant.encode(), hashlib.sha256).hexdigest()[:16]
        if len(_tenant_hashes) >= _TENANT_HASHES_MAX:
            _tenant_hashes.clear()
        if key is _tenant_key:  # not a hash under a key replaced meanwhile
            _tenant_hashes[tenant] = hashed
    return hashed


def outgoing_headers() -> dict[str, str]:
    """Log-context headers for a call to the runner, so its log lines join this request's."""
    ctx = _current.get()
    if ctx is None:
        return {}
    pairs = {
        REQUEST_ID_HEADER: ctx.request_id,
        TENANT_HEADER: ctx.tenant,
        MCP_METHOD_HEADER: ctx.mcp_method,
        TOOL_HEADER: ctx.tool,
    }
    return {k: v for k, v in pairs.items() if v}
