"""The MCPServer of secure-agent: registration of tools, resources and prompts, plus request metrics."""

from __future__ import annotations

import time
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import Resource

from .. import __version__
from ..deps import Services
from ..observability.metrics import MCP_REQUEST_SECONDS, MCP_REQUESTS, era_of
from . import prompts, resources
from .tools import files

SERVER_NAME = "secure-agent"
INSTRUCTIONS = (
    "secure-agent gives you a private, sandboxed workspace. Paths are relative to the workspace root; "
    "symlinks are never followed. Use list_directory or directory_tree to orient yourself, read_file and "
    "grep to inspect, and write_file or edit_file (try dry_run first) to change files."
)


class SecureAgentMCP(MCPServer):
    """Adds the caller's workspace files to resources/list, which static registration cannot express."""

    def __init__(self, services: Services, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._services = services

    async def list_resources(self) -> list[Resource]:
        static = await super().list_resources()
        return static + await resources.list_workspace_resources(self._services)


async def _metrics_middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    started = time.perf_counter()
    outcome = "error"
    try:
        result = await call_next(ctx)
        is_tool_error = getattr(result, "is_error", None) or (
            isinstance(result, dict) and result.get("isError")
        )
        outcome = "tool_error" if is_tool_error else "ok"
        return result
    finally:
        # Unknown methods would otherwise let a client mint unbounded label values.
        method = ctx.method if ctx.method in _KNOWN_METHODS else "other"
        MCP_REQUESTS.labels(method=method, era=era_of(ctx.protocol_version), outcome=outcome).inc()
        MCP_REQUEST_SECONDS.labels(method=method).observe(time.perf_counter() - started)


_KNOWN_METHODS = frozenset(
    {
        "initialize", "ping", "server/discover", "tools/list", "tools/call", "resources/list",
        "resources/read", "resources/templates/list", "resources/subscribe", "resources/unsubscribe",
        "prompts/list", "prompts/get", "completion/complete", "logging/setLevel", "subscriptions/listen",
        "notifications/initialized", "notifications/cancelled", "notifications/roots/list_changed",
    }
)  # fmt: skip


def build_mcp_server(services: Services) -> SecureAgentMCP:
    mcp = SecureAgentMCP(
        services,
        name=SERVER_NAME,
        title="secure-agent",
        version=__version__,
        instructions=INSTRUCTIONS,
        website_url=None,
        middleware=[_metrics_middleware],
        log_level=services.settings.log_level,
    )
    files.register(mcp, services)
    resources.register(mcp, services)
    prompts.register(mcp)
    return mcp
