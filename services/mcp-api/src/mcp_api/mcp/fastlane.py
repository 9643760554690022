"""tools/call without the SDK's per-request transport machinery: the hot path of /mcp.

Why: a `read_file` through the SDK's Streamable HTTP entry builds, per request, a starlette Request, a
transport or single-exchange context, a Connection, a ServerRunner and its middleware chain (and on the
legacy stateless path memory streams, a task group and two tasks) before it reaches the tool. In a
py-spy profile of mcp-api under load that plumbing was a quarter of the CPU of a call (docs/performance.md).

What stays the same: this layer sits innermost, behind every security and observability layer of
/mcp (auth, rate limits, header and body limits, the access line, request span). Inside, the SDK's
own functions still do the work that defines the protocol: `classify_inbound_request` (the
2026-07-28 envelope and header ladder), `validate_client_request` (the per-revision surface), the
registered tools/call handler (argument validation, the AgentProfile gate, ToolError mapping) and
`ServerRunner._serialize` (the per-revision result sieve, resultType, serverInfo stamp). The MCP span
and the metrics are the ones the SDK path records (`observe_mcp_request`).

What it takes: one JSON-RPC `tools/call` of a tool that takes no Context (so it can emit no
notification), an Accept of JSON without SSE (an SSE Accept gets the SDK's stream handling: deferred
commit, keep-alive pings, cancellation on disconnect), a served protocol revision, `_meta` holding at
most the 2026-07-28 envelope, no Mcp-Param-* headers, no session. Anything else, or anything that fails validation,
goes to the SDK untouched, before any side effect: the SDK then answers it (errors included) as it
always did. tests/mcp/test_fastlane.py sends the same requests both ways and compares the bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import pydantic_core
from mcp.server.connection import Connection
from mcp.server.runner import ServerRunner, modern_error_data
from mcp.shared._otel import extract_trace_context, otel_span
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
)
from mcp.types import CallToolResult
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    DEFAULT_NEGOTIATED_VERSION,
    PROTOCOL_VERSION_META_KEY,
    ErrorData,
)
from mcp_types import methods as _methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .server import SecureAgentMCP, observe_mcp_request

log = logging.getLogger(__name__)

_ENVELOPE_KEYS = frozenset({PROTOCOL_VERSION_META_KEY, CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY})
_REQUEST_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_PARAMS_KEYS = frozenset({"name", "arguments", "_meta"})
_JSON_HEADERS = [(b"content-type", b"application/json")]
_ROUTING_HEADERS = (b"mcp-method", b"mcp-name", b"mcp-protocol-version")


class FastLane:
    """ASGI layer in front of McpTransport (the SDK): serves eligible tools/call requests itself."""

    def __init__(
        self, app: ASGIApp, mcp: SecureAgentMCP, *, legacy_stateless: bool, enabled: bool = True
    ) -> None:
        self.app = app
        self.mcp = mcp
        self.legacy_stateless = legacy_stateless
        self.enabled = enabled
        lowlevel = mcp._lowlevel_server
        # _serialize reads only the server (cache hints, serverInfo), never the connection.
        self._shaper = ServerRunner(
            lowlevel, Connection.from_envelope(DEFAULT_NEGOTIATED_VERSION, None, None), None
        )
        self._eligible: dict[str, tuple[Any, bool]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        accept = version = None
        for key, value in headers:
            if key == b"accept":
                accept = value if accept is None else accept  # the first, as starlette reads it
            elif key == b"mcp-protocol-version":
                version = value.decode("latin-1")
            elif key == b"mcp-session-id" or key.startswith(b"mcp-param-"):
                await self.app(scope, receive, send)
                return
        message = await receive()
        body = message.get("body", b"")
        plan = None
        if message["type"] == "http.request" and not message.get("more_body", False):
            plan = self._plan(scope, accept, version, body)
        if plan is None:
            await self.app(scope, _replay(message, receive), send)
            return
        await self._serve(plan, send)

    def _plan(self, scope: Scope, accept: bytes | None, version: str | None, body: bytes) -> _Plan | None:
        """The request as the fast lane would serve it, or None to hand it to the SDK. Pure: nothing
        has happened yet when it says no."""
        if not _json_only(accept):
            return None
        legacy = version is None or version in HANDSHAKE_PROTOCOL_VERSIONS
        if legacy and not self.legacy_stateless:
            return None  # stateful legacy sessions live in the SDK
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(decoded, dict) or decoded.keys() - _REQUEST_KEYS or decoded.get("jsonrpc") != "2.0":
            return None
        if decoded.get("method") != "tools/call":
            return None
        request_id = decoded.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, int | str):
            return None
        params = decoded.get("params")
        if not isinstance(params, dict) or params.keys() - _PARAMS_KEYS:
            return None
        name = params.get("name")
        tool = self._tool(name) if isinstance(name, str) else None
        if tool is None:
            return None
        meta = params.get("_meta")
        if legacy:
            if meta is not None:
                return None  # progressToken, traceparent, or a modern envelope on a legacy wire
            version = version or DEFAULT_NEGOTIATED_VERSION
        else:
            if not isinstance(meta, dict) or meta.keys() - _ENVELOPE_KEYS:
                return None
            headers = [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in scope["headers"]
                if k in _ROUTING_HEADERS
            ]
            if find_duplicated_routing_header(headers) is not None:
                return None
            verdict = classify_inbound_request(decoded, headers=dict(headers))
            if isinstance(verdict, InboundLadderRejection):
                return None
            version = verdict.protocol_version
        entry = self.mcp._lowlevel_server.get_request_handler("tools/call")
        if entry is None:
            return None
        try:
            _methods.validate_client_request("tools/call", version, params)
            typed = entry.params_type.model_validate(params, by_name=False)
        except (KeyError, ValueError, ValidationError):
            return None
        return _Plan(request_id, version, legacy, typed, params, entry.handler)

    def _tool(self, name: str) -> Any | None:
        """The registered tool if the fast lane may run it: async, no Context (so no notifications,
        no elicitation), no resolvers. Re-checked when the registration changes."""
        tool = self.mcp._tool_manager.get_tool(name)
        if tool is None:
            return None
        cached = self._eligible.get(name)
        if cached is None or cached[0] is not tool:
            ok = tool.is_async and tool.context_kwarg is None and not tool.resolved_params
            cached = self._eligible[name] = (tool, ok)
        return tool if cached[1] else None

    async def _serve(self, plan: _Plan, send: Send) -> None:
        params = plan.params
        attributes: dict[str, Any] = {
            "mcp.method.name": "tools/call",
            "mcp.protocol.version": plan.version,
            "jsonrpc.request.id": str(plan.request_id),
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": plan.typed.name,
        }
        error: ErrorData | None = None
        with otel_span(
            name=f"tools/call {plan.typed.name}",
            kind=SpanKind.SERVER,
            attributes=attributes,
            context=extract_trace_context(params.get("_meta")),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                with observe_mcp_request("tools/call", params, plan.version) as observed:
                    result = await plan.handler(None, plan.typed)
                    observed.result(result)
                    wire = self._shaper._serialize("tools/call", plan.version, result)
                if isinstance(result, CallToolResult) and result.is_error:
                    span.set_attribute("error.type", "tool_error")
                    span.set_status(StatusCode.ERROR)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - mapped to the wire as the SDK maps it
                error = modern_error_data(exc)
                code = str(error.code)
                span.set_attributes({"error.type": code, "rpc.response.status_code": code})
                span.set_status(StatusCode.ERROR, error.message)
        if error is not None:
            envelope = {
                "jsonrpc": "2.0",
                "id": plan.request_id,
                "error": error.model_dump(by_alias=True, exclude_none=True),
            }
            status = 200 if plan.legacy else ERROR_CODE_HTTP_STATUS.get(error.code, 200)
        else:
            envelope = {"jsonrpc": "2.0", "id": plan.request_id, "result": wire}
            status = 200
        # Byte-for-byte what each SDK entry writes: pydantic's JSON on the legacy transport, json.dumps on
        # the 2026-07-28 single-exchange one.
        if plan.legacy:
            payload = pydantic_core.to_json(envelope)
        else:
            payload = json.dumps(envelope, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(payload)).encode()), *_JSON_HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class _Plan:
    __slots__ = ("request_id", "version", "legacy", "typed", "params", "handler")

    def __init__(
        self,
        request_id: int | str,
        version: str,
        legacy: bool,
        typed: Any,
        params: Mapping[str, Any],
        handler: Any,
    ) -> None:
        self.request_id = request_id
        self.version = version
        self.legacy = legacy
        self.typed = typed
        self.params = params
        self.handler = handler  # the registered tools/call handler, extension interceptors included


def _json_only(accept: bytes | None) -> bool:
    """JSON accepted and SSE not: what sends a POST to the JSON session manager (mcp/transport.py),
    with the SDK's wildcard rules (check_accept_headers)."""
    if accept is None:
        return False
    types = [part.split(b";", 1)[0].strip().lower() for part in accept.split(b",")]
    if b"*/*" in types or b"text/event-stream" in types or b"text/*" in types:
        return False
    return b"application/json" in types or b"application/*" in types


def _replay(message: Message, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return message
        return await receive()

    return replay
