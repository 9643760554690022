"""Prometheus metrics of mcp-api (prefix `secure_agent_`); HTTP metrics come from the instrumentator."""

from __future__ import annotations

from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from prometheus_client import Counter, Histogram

MCP_REQUESTS = Counter(
    "secure_agent_mcp_requests_total",
    "MCP JSON-RPC requests handled, by method, protocol era and outcome.",
    ["method", "era", "outcome"],
)
MCP_REQUEST_SECONDS = Histogram(
    "secure_agent_mcp_request_duration_seconds",
    "Time spent handling one MCP request, by method.",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TOOL_CALLS = Counter("secure_agent_tool_calls_total", "Tool calls, by tool and outcome.", ["tool", "outcome"])
TOOL_SECONDS = Histogram(
    "secure_agent_tool_duration_seconds",
    "Tool call latency, by tool.",
    ["tool"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
AUTH_FAILURES = Counter(
    "secure_agent_auth_failures_total", "Rejected authentication attempts, by reason.", ["reason"]
)


def era_of(protocol_version: str | None) -> str:
    return "modern" if protocol_version in MODERN_PROTOCOL_VERSIONS else "legacy"
