"""What every tool does around its work: authorize the caller, reach the runner, count and time."""

from __future__ import annotations

import logging
import time

from agent_runner.client import RunnerError, RunnerUnavailable
from agent_runner.observability.logs import event
from agent_runner.protocol import ErrorCode
from mcp.server.mcpserver.exceptions import ToolError
from opentelemetry.trace import Status, StatusCode
from pydantic import BaseModel

from ...auth.principal import Principal, current_principal
from ...deps import Services
from ...observability.http import access_fields, layer_level
from ...observability.metrics import TOOL_CALLS, TOOL_SECONDS, child
from ...observability.tracing import tool_span
from ...runners.base import DEFAULT_WORKSPACE, RunnerLimitError, RunnerStartError, WorkspaceNameError
from ...security.rate_limit import TooManyInFlight

log = logging.getLogger(__name__)


def require(scope: str, action: str) -> Principal:
    """The caller, if its key carries `scope`; otherwise a ToolError saying which scope is missing."""
    principal = current_principal.get()
    if principal is None:
        raise ToolError("not authenticated")
    if not principal.has(scope):
        raise ToolError(
            f"permission denied: {action} needs the '{scope}' scope, and this API key has "
            f"{', '.join(sorted(principal.scopes)) or 'no scopes'}; ask an admin for a key with '{scope}'"
        )
    return principal


async def run_op(
    services: Services,
    tool: str,
    scope: str,
    workspace: str | None,
    op: str,
    request: BaseModel,
    *,
    request_timeout: float | None = None,
):
    """Run one runner operation on behalf of the current caller, turning every failure into a ToolError.

    `request_timeout` overrides the runner call timeout (commands may legitimately run for minutes)."""
    started = time.perf_counter()
    outcome = "error"
    error_code: str | None = None
    with tool_span(tool, **{"rpc.method": op}) as span:
        try:
            try:
                principal = require(scope, tool)
            except ToolError:
                outcome, error_code = "denied", "missing_scope"
                raise
            try:
                client = await services.runners.client_for(principal.tenant, workspace or DEFAULT_WORKSPACE)
            except WorkspaceNameError as exc:
                outcome, error_code = "rejected", "invalid_workspace"
                raise ToolError(str(exc)) from exc
            except RunnerLimitError as exc:
                outcome, error_code = "rejected", "runner_limit"
                raise ToolError(str(exc)) from exc
            except RunnerStartError as exc:
                error_code = "runner_start_failed"
                raise ToolError(f"workspace is temporarily unavailable, retry shortly ({exc})") from exc
            try:
                if services.limiter is not None:
                    # Per-tenant cap on tool calls in flight (one tenant cannot take every worker slot).
                    async with services.limiter.tool_call_slot(principal.tenant):
                        result = await client.call(op, request, request_timeout=request_timeout)
                else:
                    result = await client.call(op, request, request_timeout=request_timeout)
            except TooManyInFlight as exc:
                outcome, error_code = "rejected", "rate_limited"
                raise ToolError(str(exc)) from exc
            except RunnerUnavailable as exc:
                error_code = "runner_unavailable"
                raise ToolError(f"workspace runner is unavailable, retry shortly: {exc.message}") from exc
            except RunnerError as exc:
                outcome = "denied" if exc.code in _DENIALS else "rejected"
                error_code = exc.code.value
                raise ToolError(f"{tool} failed [{exc.code.value}]: {exc.message}") from exc
            outcome = "ok"
            return result
        finally:
            elapsed = time.perf_counter() - started
            child(TOOL_CALLS, tool, outcome).inc()
            child(TOOL_SECONDS, tool).observe(elapsed)
            span.set_attribute("secure_agent.outcome", outcome)
            if error_code:
                span.set_attribute("error.type", error_code)
            if outcome == "error":
                span.set_status(Status(StatusCode.ERROR, error_code or "error"))
            # One INFO line per request: a success only adds its fields to the access line.
            access_fields(op=op, tool_outcome=outcome, error_code=error_code, tool_ms=round(elapsed * 1000, 3))
            event(
                log,
                layer_level(outcome),
                "tool call",
                op=op,
                error_code=error_code,
                duration_ms=round(elapsed * 1000, 3),
                outcome=outcome,
            )


_DENIALS = {
    ErrorCode.ESCAPE,
    ErrorCode.SYMLINK,
    ErrorCode.HARDLINKED,
    ErrorCode.PERMISSION_DENIED,
    ErrorCode.INVALID_PATH,
}
