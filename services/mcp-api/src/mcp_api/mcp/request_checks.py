"""Front-door checks on /mcp with answers a person can act on (the SDK repeats them, tersely)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

# JSON-RPC "invalid request" for transport-level refusals; the HTTP status carries the kind.
INVALID_REQUEST = -32600


def matches(value: str, patterns: list[str]) -> bool:
    """Exact match, or `name:*` / `scheme://name:*` for the name with any port."""
    for pattern in patterns:
        if value == pattern:
            return True
        if pattern.endswith(":*") and value.startswith(pattern[:-1]) and value[len(pattern) - 1 :].isdigit():
            return True
    return False


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def refusal(scope: Scope, allowed_hosts: list[str], allowed_origins: list[str]) -> tuple[int, str] | None:
    host = header(scope, b"host")
    if host is None or not matches(host, allowed_hosts):
        return 421, (
            f"Host {host!r} is not served here. If this is your server's name, add it to "
            "SECURE_AGENT_ALLOWED_HOSTS (JSON list; 'name:*' allows any port)."
        )
    origin = header(scope, b"origin")
    if origin is not None and not matches(origin, allowed_origins):
        return 403, (
            f"Origin {origin!r} is not allowed. Browser clients must be listed in SECURE_AGENT_ALLOWED_ORIGINS."
        )
    if scope.get("method") == "POST":
        content_type = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return (
                415,
                f"Content-Type must be application/json for MCP messages, not {content_type or 'missing'!r}.",
            )
    return None


async def send_refusal(send: Send, status: int, message: str) -> None:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class FrontDoor:
    """Outermost layer of /mcp: header hygiene and Host/Origin/Content-Type before auth is even tried,
    so a DNS-rebinding page learns nothing from a 401."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str], allowed_origins: list[str]) -> None:
        self.app = app
        self.allowed_hosts = list(allowed_hosts)
        self.allowed_origins = list(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Field values exclude surrounding whitespace (RFC 9110 §5.5); httptools keeps it, so trim here
        # or `Mcp-Name: " read_file "` would not match the body.
        scope = dict(scope)
        scope["headers"] = [(k, v.strip(b" \t")) for k, v in scope["headers"]]
        refused = refusal(scope, self.allowed_hosts, self.allowed_origins)
        if refused is not None:
            await send_refusal(send, *refused)
            return
        await self.app(scope, receive, send)
