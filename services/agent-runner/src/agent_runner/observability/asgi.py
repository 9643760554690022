"""The runner's request telemetry: one SERVER span and one JSON log line per runner-protocol call
(at DEBUG for a successful one, which mcp-api's access line already records; INFO otherwise).

The caller's `traceparent` continues its trace; `x-request-id` and the hashed tenant, MCP method
and tool headers (sent by RunnerClient) join the runner's log lines to the mcp-api request.
"""

from __future__ import annotations

import json
import logging
import time

from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import context
from .logs import event
from .tracing import current_span, extract, tracer

log = logging.getLogger("agent_runner.access")
_tracer = tracer("agent_runner")
_PROPAGATED = frozenset((b"traceparent", b"tracestate", b"baggage"))
# The log-context headers RunnerClient sends (ASGI header names are lower-case bytes).
_REQUEST_ID = context.REQUEST_ID_HEADER.encode()
_TENANT = context.TENANT_HEADER.encode()
_MCP_METHOD = context.MCP_METHOD_HEADER.encode()
_TOOL = context.TOOL_HEADER.encode()
_MAX_ERROR_BODY = 4096


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    if status == 401:
        return "unauthorized"
    if status == 403:
        return "denied"
    if status == 499:
        return "cancelled"
    return "rejected" if status < 500 else "error"


class RunnerTelemetry:
    def __init__(self, app: ASGIApp, quiet_paths: tuple[str, ...] = ("/v1/health",)) -> None:
        self.app = app
        self.quiet_paths = quiet_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier: dict[str, str] = {}
        request_id = tenant = mcp_method = tool = None
        for key, value in scope.get("headers", ()):
            if key in _PROPAGATED:
                carrier[key.decode("latin-1")] = value.decode("latin-1")
            elif key == _REQUEST_ID:
                request_id = value.decode("latin-1")
            elif key == _TENANT:
                tenant = value.decode("latin-1")
            elif key == _MCP_METHOD:
                mcp_method = value.decode("latin-1")
            elif key == _TOOL:
                tool = value.decode("latin-1")
        path: str = scope.get("path", "")
        op = path[4:] if path.startswith("/v1/") else path
        started = time.perf_counter()
        status = 500
        error_body = bytearray()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400:
                if len(error_body) < _MAX_ERROR_BODY:
                    error_body.extend(message.get("body", b"")[: _MAX_ERROR_BODY - len(error_body)])
            await send(message)

        with (
            context.bind(
                request_id=context.accept_request_id(request_id),
                tenant=context.safe_label(tenant),
                mcp_method=context.safe_label(mcp_method),
                tool=context.safe_label(tool),
            ),
            current_span(
                _tracer,
                f"runner {op}",
                # No propagation headers (a caller without tracing): no context to extract.
                context=extract(carrier) if carrier else None,
                kind=SpanKind.SERVER,
                attributes={
                    "rpc.system": "secure-agent-runner",
                    "rpc.method": op,
                    "http.request.method": scope.get("method", ""),
                },
            ) as span,
        ):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                code = _error_code(bytes(error_body)) if status >= 400 else None
                span.set_attribute("http.response.status_code", status)
                if code:
                    span.set_attribute("error.type", code)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR, code or str(status)))
                # A successful call at DEBUG: mcp-api's access line already records it (op, outcome,
                # tool_ms). Refused and failed calls stay at INFO.
                level = logging.DEBUG if status < 400 or path in self.quiet_paths else logging.INFO
                if log.isEnabledFor(level):
                    event(
                        log,
                        level,
                        "runner request",
                        op=op,
                        status=status,
                        error_code=code,
                        duration_ms=round((time.perf_counter() - started) * 1000, 3),
                        outcome=outcome_of(status),
                    )


def _error_code(body: bytes) -> str | None:
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) and len(code) <= 64 else None
