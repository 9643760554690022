"""What one request may cost before any handler sees it: header count and size, body size, how long
the body may take to arrive, and the shape of the JSON-RPC message (nesting depth, number of
containers, key length). Each refusal is an HTTP status with a JSON-RPC error body.

Argument lengths are bounded by each tool's input schema (`maxLength`, `maxItems`, ...), validated
before a tool runs; the body limit bounds them all together.
"""

from __future__ import annotations

import asyncio
import json
import re
from itertools import accumulate

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import RequestLimitSettings

INVALID_REQUEST = -32600
# A JSON string, unrolled-loop form (linear, no backtracking blow-up on long strings).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_KEY = re.compile(rb'"([^"\\]*(?:\\.[^"\\]*)*)"\s*:')
_DEPTH = bytes.maketrans(b"", b"")
_OPEN_CLOSE = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class RequestRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def send_error(send: Send, status: int, message: str, extra_headers: list | None = None) -> None:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status in (408, 413, 431):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body})


def check_headers(scope: Scope, limits: RequestLimitSettings) -> None:
    headers = scope.get("headers", ())
    if len(headers) > limits.max_headers:
        raise RequestRefused(431, f"Too many request header fields (at most {limits.max_headers}).")
    size = sum(len(k) + len(v) + 4 for k, v in headers)
    if size > limits.max_header_bytes:
        raise RequestRefused(431, f"Request headers are too large (at most {limits.max_header_bytes} bytes).")


def check_json_shape(body: bytes, limits: RequestLimitSettings) -> None:
    """Depth, container count and key length of a JSON text, without parsing it (cheap on large bodies:
    the common case is decided by two byte counts)."""
    raw = body.count(b"[") + body.count(b"{")  # counts brackets inside strings too: never less
    if raw <= limits.max_json_nodes and raw <= limits.max_json_depth:
        containers = raw  # neither limit can be exceeded: skip stripping the strings
    else:
        stripped = _STRING.sub(b'""', body) if b'"' in body else body
        containers = stripped.count(b"[") + stripped.count(b"{")
    if containers > limits.max_json_nodes:
        raise RequestRefused(
            400, f"JSON message has too many objects and arrays (at most {limits.max_json_nodes})."
        )
    if containers > limits.max_json_depth:
        brackets = stripped.translate(_DEPTH, delete=bytes(set(range(256)) - set(_OPEN_CLOSE)))
        depth = max(accumulate(_OPEN_CLOSE[b] for b in brackets), default=0)
        if depth > limits.max_json_depth:
            raise RequestRefused(
                400, f"JSON message is nested too deeply (at most {limits.max_json_depth} levels)."
            )
    # Without escapes every key is one of the pieces between quotes: when none is that long, no key is.
    if b":" in body and (b"\\" in body or max(map(len, body.split(b'"'))) > limits.max_key_chars):
        for match in _KEY.finditer(body):
            if len(match.group(1)) > limits.max_key_chars:
                raise RequestRefused(
                    400, f"JSON object key too long (at most {limits.max_key_chars} characters)."
                )


class HeaderLimits:
    """Before authentication: header count and size."""

    def __init__(self, app: ASGIApp, limits: RequestLimitSettings) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                check_headers(scope, self.limits)
            except RequestRefused as refused:
                await send_error(send, refused.status, refused.message)
                return
        await self.app(scope, receive, send)


class BodyLimits:
    """After authentication (so anonymous clients never make us read a body): the POST body is read
    here, bounded in size and time, its JSON shape checked, then replayed to the MCP transport."""

    def __init__(self, app: ASGIApp, limits: RequestLimitSettings, max_body_bytes: int) -> None:
        self.app = app
        self.limits = limits
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive)
            check_json_shape(body, self.limits)
        except RequestRefused as refused:
            await send_error(send, refused.status, refused.message)
            return
        except _Disconnected:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise RequestRefused(400, "Content-Length is not a number.") from None
                if declared > self.max_body_bytes:
                    raise RequestRefused(
                        413, f"Request body too large (at most {self.max_body_bytes} bytes)."
                    )
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Disconnected
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        raise RequestRefused(
                            413, f"Request body too large (at most {self.max_body_bytes} bytes)."
                        )
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise RequestRefused(
                408, f"Request body did not arrive within {self.limits.body_timeout_s:g} s."
            ) from None
        return b"".join(chunks)


class _Disconnected(Exception):
    pass
