"""The caller's AgentProfile decides which tools exist for it (spec.allowedTools, fnmatch patterns).

Enforced in `SecureAgentMCP.call_tool` (every tools/call, the agent's included) and reflected in
tools/list. Scopes still apply on top: a profile can only narrow what an API key may do. Outside a
request (no caller, e.g. the manifest generator) nothing is filtered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from ...auth.principal import current_principal
from ...observability.metrics import TOOL_CALLS
from .files import TOOL_SCOPES

if TYPE_CHECKING:
    from ...deps import Services
    from ...profiles.effective import TenantProfile

T = TypeVar("T")


def caller_profile(services: Services) -> TenantProfile | None:
    principal = current_principal.get()
    if principal is None or services.profiles is None:
        return None
    return services.profiles.for_tenant(principal.tenant)


def allowed_tools(services: Services, tools: list[T]) -> list[T]:
    profile = caller_profile(services)
    if profile is None:
        return tools
    return [tool for tool in tools if profile.allows_tool(tool.name)]  # type: ignore[attr-defined]


def tool_allowed(services: Services, name: str) -> bool:
    profile = caller_profile(services)
    return profile is None or profile.allows_tool(name)


def check_tool_allowed(services: Services, name: str) -> None:
    profile = caller_profile(services)
    if profile is None or profile.allows_tool(name):
        return
    # Only registered names become label values: a client must not mint unbounded series.
    TOOL_CALLS.labels(tool=name if name in TOOL_SCOPES else "other", outcome="denied").inc()
    raise ToolError(
        f"tool '{name}' is not allowed for your tenant: its AgentProfile '{profile.name}' allows only "
        f"{', '.join(profile.spec.allowed_tools) or 'no tools'} (spec.allowedTools); ask an admin to change "
        "the profile"
    )
