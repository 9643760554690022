"""Observability shared by agent-runner and mcp-api: JSON logs with redaction, log context and
OpenTelemetry tracing with W3C propagation over the runner protocol.

agent-runner reads its settings from the environment (mcp-api sets them for local runners, the
pod spec on Kubernetes):

    AGENT_RUNNER_LOG_FORMAT   json (default) | text
    AGENT_RUNNER_LOG_LEVEL    debug | info | warning (default) | error; --log-level wins
    OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT   export spans (off if unset)
    OTEL_SERVICE_NAME, OTEL_SDK_DISABLED, OTEL_BSP_*                   standard OpenTelemetry
"""

from __future__ import annotations

import os

from . import context
from .context import LogContext, annotate, bind, hash_tenant
from .logs import configure_logging, event, trace_ids
from .redaction import REDACTED, redact_text, redact_value, register_secret, summarize_arguments
from .tracing import extract, inject, setup_tracing, tracer

LOG_FORMAT_ENV = "AGENT_RUNNER_LOG_FORMAT"
LOG_LEVEL_ENV = "AGENT_RUNNER_LOG_LEVEL"


def setup_runner(log_level: str | None = None) -> None:
    """Logging and tracing of an agent-runner process, from its environment."""
    from agent_runner import __version__

    level = (log_level or os.environ.get(LOG_LEVEL_ENV) or "warning").upper()
    fmt = "text" if os.environ.get(LOG_FORMAT_ENV, "json").lower() == "text" else "json"
    # stderr: a local runner shares mcp-api's streams, and stdout stays free for the protocol's future.
    import sys

    configure_logging("agent-runner", level, fmt, stream=sys.stderr)
    setup_tracing("agent-runner", service_version=__version__)


__all__ = [
    "REDACTED",
    "LogContext",
    "annotate",
    "bind",
    "configure_logging",
    "context",
    "event",
    "extract",
    "hash_tenant",
    "inject",
    "redact_text",
    "redact_value",
    "register_secret",
    "setup_runner",
    "setup_tracing",
    "summarize_arguments",
    "trace_ids",
    "tracer",
]
