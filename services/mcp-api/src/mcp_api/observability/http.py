"""The outermost layer of mcp-api: request id, HTTP SERVER span, log context and the access line.

The access line ("http request") is the one INFO line of a successful request: the MCP layer and the
tool layer add their fields to it (`access_fields`: era, protocol_version, mcp_outcome, op,
tool_outcome, error_code, tool_ms) instead of writing lines of their own; they write their own line
("mcp request", "tool call") when their outcome is not ok, or at DEBUG.

Pure ASGI, so SSE streams pass through unbuffered; the span and the access line end when the
response (or the stream) does. A caller's `traceparent` header continues its trace; a
`traceparent` in an MCP message's `params._meta` continues the client's trace for the MCP span
(the SDK's OpenTelemetryMiddleware does that), and this request's span is then linked to it.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

from agent_runner.observability import context
from agent_runner.observability.logs import event
from agent_runner.observability.tracing import current_span, extract, tracer
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import (
    HTTP_LATENCY,
    HTTP_LATENCY_HIGHR,
    HTTP_REQUEST_SIZE,
    HTTP_REQUESTS,
    HTTP_RESPONSE_SIZE,
    child,
)

log = logging.getLogger("mcp_api.access")
_tracer = tracer("mcp_api.http")
ROUTES = frozenset(
    {"/mcp", "/health", "/ready", "/metrics", "/diagnostics", "/.well-known/oauth-protected-resource"}
)
QUIET_ROUTES = frozenset({"/health", "/ready", "/metrics"})
_PROPAGATED = (b"traceparent", b"tracestate", b"baggage")


class _RequestSpan:
    __slots__ = ("span", "mcp_trace_id", "fields")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.mcp_trace_id: str | None = None
        # What inner layers (MCP method, tool) tell the access line: one line per request.
        self.fields: dict[str, object] = {}


_request_span: ContextVar[_RequestSpan | None] = ContextVar("secure_agent_request_span", default=None)


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    if status == 429:
        return "rate_limited"
    return "rejected" if status < 500 else "error"


def layer_level(outcome: str) -> int:
    """The level of an inner layer's own line ("mcp request", "tool call"): WARNING for a server
    fault, INFO for any other failure, DEBUG for a success (the access line already carries it)."""
    return logging.WARNING if outcome == "error" else logging.INFO if outcome != "ok" else logging.DEBUG


def access_fields(**fields: object) -> None:
    """Add fields to this request's access line ("http request"), the one INFO line of a successful
    request; inner layers call it instead of writing their own line (they still do on failures, and
    at DEBUG). Values are redacted with the line. Outside a request this does nothing."""
    request = _request_span.get()
    if request is not None:
        request.fields.update(fields)


def link_request_span(span_context: SpanContext) -> None:
    """Called for an MCP span that continues a client's trace: link this request's span to it, so the
    two traces can be found from each other."""
    request = _request_span.get()
    if request is None or not span_context.is_valid:
        return
    if request.span.get_span_context().trace_id != span_context.trace_id:
        request.span.add_link(span_context, {"secure_agent.link": "mcp_meta_traceparent"})
        request.mcp_trace_id = format(span_context.trace_id, "032x")
        request.span.set_attribute("secure_agent.mcp_trace_id", request.mcp_trace_id)


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier: dict[str, str] | None = None
        incoming_id = None
        request_bytes = 0
        for key, value in scope.get("headers", ()):
            if key in _PROPAGATED:
                if carrier is None:
                    carrier = {}
                carrier[key.decode("latin-1")] = value.decode("latin-1")
            elif key == b"x-request-id":
                incoming_id = value.decode("latin-1")
            elif key == b"content-length" and value.isdigit():
                request_bytes = int(value)
        request_id = context.accept_request_id(incoming_id)
        method = scope.get("method", "GET")
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        started = time.perf_counter()
        status = 500
        response_bytes = 0
        request_id_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_bytes
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                for key, value in headers:
                    if key == b"content-length" and value.isdigit():
                        response_bytes = int(value)
                headers.append(request_id_header)
                message = {**message, "headers": headers}
            await send(message)

        with (
            context.bind(request_id=request_id) as log_ctx,
            current_span(
                _tracer,
                f"{method} {route}",
                # No caller context: the span starts a trace (what an empty carrier would give, cheaper).
                context=extract(carrier) if carrier else None,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "http.route": route, "url.path": route},
            ) as span,
        ):
            request = _RequestSpan(span)
            token = _request_span.set(request)
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                _request_span.reset(token)
                elapsed = time.perf_counter() - started
                span.set_attribute("http.response.status_code", status)
                if log_ctx.tenant:
                    span.set_attribute("secure_agent.tenant", log_ctx.tenant)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                _record_http(method, path, status, elapsed, request_bytes, response_bytes)
                if self.access_log:
                    event(
                        log,
                        logging.DEBUG if route in QUIET_ROUTES else logging.INFO,
                        "http request",
                        http_method=method,
                        path=route,
                        status=status,
                        duration_ms=round(elapsed * 1000, 3),
                        outcome=outcome_of(status),
                        mcp_trace_id=request.mcp_trace_id,
                        **request.fields,
                    )


def _record_http(
    method: str, path: str, status: int, elapsed: float, request_bytes: int, response_bytes: int
) -> None:
    """The instrumentator's default HTTP metrics (observability/metrics.py), with its label rules:
    the route path as handler ("none" for paths no route serves), the status grouped ("2xx"),
    /metrics itself not counted."""
    if path == "/metrics":
        return
    handler = path if path in ROUTES else "none"
    if method not in _METHODS:
        method = "other"
    child(HTTP_REQUESTS, method, f"{status // 100}xx", handler).inc()
    child(HTTP_REQUEST_SIZE, handler).observe(request_bytes)
    child(HTTP_RESPONSE_SIZE, handler).observe(response_bytes)
    HTTP_LATENCY_HIGHR.observe(elapsed)
    child(HTTP_LATENCY, method, handler).observe(elapsed)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
