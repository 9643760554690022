"""OpenTelemetry for mcp-api: provider set-up from settings, span helpers, and runner propagation.

Spans: the HTTP request (observability.http), the MCP method (the SDK's OpenTelemetryMiddleware,
which also continues a `traceparent` sent in `params._meta`), each tool call (`tool_span`), each
runner operation (agent_runner.client, and the runner's own SERVER span on the other side), and
each model call (`model_call_span`, for the agent's provider clients).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agent_runner.observability import LOG_FORMAT_ENV, LOG_LEVEL_ENV
from agent_runner.observability.tracing import current_span, inject, otlp_traces_endpoint, tracer
from agent_runner.observability.tracing import setup_tracing as _setup
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .. import __version__
from ..settings import Settings

_tracer = tracer("mcp_api")
_runner_env: dict[str, str] = {}
# Standard OpenTelemetry variables a runner may inherit (never OTEL_EXPORTER_OTLP_HEADERS: credentials).
_OTEL_PASSTHROUGH = (
    "OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_PROPAGATORS",
    "OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT", "OTEL_RESOURCE_ATTRIBUTES",
)  # fmt: skip


def setup_tracing(settings: Settings):
    """Install the tracer provider (ids always, export only when configured) and remember what
    local runners need to join the same traces."""
    headers = {k: v.get_secret_value() for k, v in settings.tracing.otlp_headers.items()}
    provider = _setup(
        "mcp-api",
        enabled=settings.tracing.enabled,
        otlp_endpoint=settings.tracing.otlp_endpoint,
        otlp_headers=headers,
        sample_ratio=settings.tracing.sample_ratio,
        service_version=__version__,
    )
    env = {
        LOG_FORMAT_ENV: settings.logging.format,
        LOG_LEVEL_ENV: settings.log_level.lower(),
        "OTEL_SERVICE_NAME": "agent-runner",
    }
    env.update({k: v for k, v in os.environ.items() if k in _OTEL_PASSTHROUGH})
    if not settings.tracing.enabled:
        env["OTEL_SDK_DISABLED"] = "true"
    endpoint = otlp_traces_endpoint(settings.tracing.otlp_endpoint)
    if endpoint and settings.tracing.propagate_to_runner and not headers:
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint
    _runner_env.clear()
    _runner_env.update(env)
    return provider


def runner_env() -> dict[str, str]:
    """Environment for a local runner process: log format and level, and where its spans go."""
    return dict(_runner_env)


@contextmanager
def tool_span(tool: str, **attributes: Any) -> Iterator[Span]:
    """One INTERNAL span per tool call (MCP tools/call, and the agent's tool calls later)."""
    with current_span(
        _tracer,
        f"tool {tool}",
        kind=SpanKind.INTERNAL,
        attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool, **attributes},
    ) as span:
        yield span


@contextmanager
def model_call_span(provider: str, model: str, operation: str = "chat") -> Iterator[dict[str, str]]:
    """For the agent's provider clients: a CLIENT span per model call, following the GenAI semantic
    conventions, yielding the headers (W3C traceparent) to send with the provider HTTP request.

        with model_call_span("anthropic", "claude-x") as headers:
            response = await http.post(url, headers={**auth, **headers}, ...)

    Record tokens and latency with metrics.record_model_call.
    """
    started = time.perf_counter()
    with current_span(
        _tracer,
        f"{operation} {model}",
        kind=SpanKind.CLIENT,
        attributes={"gen_ai.system": provider, "gen_ai.request.model": model, "gen_ai.operation.name": operation},
        record_exception=False,
    ) as span:
        try:
            yield inject({})
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
            raise
        finally:
            span.set_attribute("secure_agent.duration_ms", round((time.perf_counter() - started) * 1000, 3))
