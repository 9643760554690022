"""The MCPServer of secure-agent: registration of tools, resources and prompts, plus request metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agent_runner.observability import context as log_context
from agent_runner.observability.logs import event
from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ResourceError, ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.request_state import RequestStateSecurity
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, CallToolRequestParams, CallToolResult, Resource, TextContent
from mcp.types import Tool as MCPTool
from opentelemetry import trace
from pydantic import ValidationError

from .. import __version__
from ..deps import Services
from ..observability.http import access_fields, layer_level, link_request_span
from ..observability.metrics import MCP_REQUEST_SECONDS, MCP_REQUESTS, child, era_of
from . import prompts, resources
from .tools import agent as agent_tools
from .tools import conversations as conversation_tools
from .tools import exec as exec_tools
from .tools import files
from .tools.gate import allowed_tools, check_tool_allowed, tool_allowed

log = logging.getLogger(__name__)
# The SDK's tools/call handler logs a tool's failure here; so does handle_call_tool_without_context.
_sdk_log = logging.getLogger("mcp.server.mcpserver.server")
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
        # tools/list as built from the registered tools, rebuilt when they change (compared by identity).
        self._listed: tuple[tuple[Any, ...], list[MCPTool]] | None = None

    async def list_tools(self) -> list[MCPTool]:
        """tools/list without the tools the caller's AgentProfile does not allow (spec.allowedTools).

        The full list is built once and reused while the registered tools are the same objects; the
        profile filter runs on every call, so a profile change shows at once."""
        registered = tuple(self._tool_manager.list_tools())
        listed = self._listed
        if listed is None or len(listed[0]) != len(registered) or any(
            a is not b for a, b in zip(listed[0], registered, strict=True)
        ):
            listed = self._listed = (registered, await super().list_tools())
        return allowed_tools(self._services, list(listed[1]))

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        # Every tools/call passes here, the agent's own tool calls included (agent/loop.py), or
        # through handle_call_tool_without_context below, which applies the same gate.
        check_tool_allowed(self._services, name)
        return await super().call_tool(name, arguments, context)

    async def handle_call_tool_without_context(self, tool: Tool, params: CallToolRequestParams) -> Any:
        """The registered tools/call handler (`_handle_call_tool` → `call_tool` → `Tool.run`) for a tool
        that reads no Context and has no resolvers (mcp/fastlane.py checks): the same gate, the same
        `Tool.run` (argument validation, the tool, output conversion) and the same mapping of failures,
        without the Context the SDK builds for every call (a pydantic model nobody would read).
        tests/test_fastlane.py holds its answers, failures included, to the SDK path's bytes."""
        try:
            check_tool_allowed(self._services, tool.name)
            return await tool.run(params.arguments or {}, None, convert_result=True)  # type: ignore[arg-type]
        except MCPError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped and logged as _handle_call_tool maps and logs it
            if isinstance(exc, ToolError) and not isinstance(exc, UnexpectedToolError):
                if isinstance(exc.__cause__, ValidationError):
                    fields = sorted({".".join(str(part) for part in err["loc"]) for err in exc.__cause__.errors()})
                    _sdk_log.info("Tool %r rejected arguments: %r", params.name, fields)
                else:
                    _sdk_log.info("Tool %r failed: %r", params.name, str(exc))
            else:
                _sdk_log.exception("Tool %r raised an unexpected exception", params.name)
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)

    async def list_resources(self) -> list[Resource]:
        static = await super().list_resources()
        if not tool_allowed(self._services, "read_file"):
            return static  # workspace files as resources are read_file by another door
        return static + await resources.list_workspace_resources(self._services)

    async def read_resource(self, uri: Any, context: Any = None) -> Any:
        if str(uri).startswith("workspace://") and not tool_allowed(self._services, "read_file"):
            # The same refusal as the tool: a profile that withholds read_file withholds the files.
            try:
                check_tool_allowed(self._services, "read_file")
            except ToolError as exc:
                raise ResourceError(str(exc)) from None
        return await super().read_resource(uri, context)


async def _metrics_middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Metrics, the log context and one log line per MCP message. Runs inside the SDK's
    OpenTelemetryMiddleware, so the current span is the MCP method's span."""
    with observe_mcp_request(ctx.method, ctx.params, ctx.protocol_version) as observed:
        result = await call_next(ctx)
        observed.result(result)
        return result


class _Observed:
    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome = "error"

    def result(self, result: Any) -> None:
        is_tool_error = getattr(result, "is_error", None) or (isinstance(result, dict) and result.get("isError"))
        self.outcome = "tool_error" if is_tool_error else "ok"


@contextmanager
def observe_mcp_request(method: str, params: Any, protocol_version: str) -> Iterator[_Observed]:
    """What every MCP message gets, whichever path serves it (the SDK's or mcp/fastlane.py): metrics,
    the log context, fields for the access line, span attributes, and a line of its own when it did
    not succeed. The caller reports the handler's result with `.result()`; an exception is classified
    here and re-raised. The current span is the MCP method's span."""
    started = time.perf_counter()
    observed = _Observed()
    # Unknown methods would otherwise let a client mint unbounded label values.
    method = method if method in _KNOWN_METHODS else "other"
    name = params.get("name") if params else None
    tool = name if method == "tools/call" and isinstance(name, str) and len(name) <= 128 else None
    era = era_of(protocol_version)
    span = trace.get_current_span()
    link_request_span(span.get_span_context())
    log_context.annotate(mcp_method=method, tool=tool)
    with log_context.bind(mcp_method=method, tool=tool):
        try:
            yield observed
        except MCPError as exc:
            # A JSON-RPC error the client caused (bad params, unknown method) is not a server fault.
            observed.outcome = "error" if exc.error.code == INTERNAL_ERROR else "client_error"
            raise
        except ValidationError:
            observed.outcome = "client_error"
            raise
        finally:
            outcome = observed.outcome
            elapsed = time.perf_counter() - started
            child(MCP_REQUESTS, method, era, outcome).inc()
            child(MCP_REQUEST_SECONDS, method).observe(elapsed)
            span.set_attributes({"secure_agent.outcome": outcome, "secure_agent.era": era})
            current = log_context.current()
            if current is not None and current.tenant:
                span.set_attribute("secure_agent.tenant", current.tenant)
            # One INFO line per request: a success only adds its fields to the access line.
            access_fields(era=era, protocol_version=protocol_version, mcp_outcome=outcome)
            if outcome != "ok" or log.isEnabledFor(logging.DEBUG):
                event(
                    log,
                    layer_level(outcome),
                    "mcp request",
                    era=era,
                    protocol_version=protocol_version,
                    duration_ms=round(elapsed * 1000, 3),
                    outcome=outcome,
                )


_KNOWN_METHODS = frozenset(
    {
        "initialize", "ping", "server/discover", "tools/list", "tools/call", "resources/list",
        "resources/read", "resources/templates/list", "resources/subscribe", "resources/unsubscribe",
        "prompts/list", "prompts/get", "completion/complete", "logging/setLevel", "subscriptions/listen",
        "notifications/initialized", "notifications/cancelled", "notifications/roots/list_changed",
    }
)  # fmt: skip


def _request_state_security(services: Services) -> RequestStateSecurity | None:
    """Shared keys let any replica unseal the requestState another one minted; None: a per-process key.
    The audience is the server name, so state from another service sharing the keys is refused."""
    keys = [key.get_secret_value() for key in services.settings.request_state_keys]
    return RequestStateSecurity(keys=keys, audience=SERVER_NAME) if keys else None


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
        request_state_security=_request_state_security(services),
    )
    files.register(mcp, services)
    exec_tools.register(mcp, services)
    agent_tools.register(mcp, services)
    conversation_tools.register(mcp, services)
    resources.register(mcp, services)
    prompts.register(mcp)
    return mcp
