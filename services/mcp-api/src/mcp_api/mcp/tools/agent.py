"""Agent tools: agent_run, agent_approve, agent_cancel (scope `agent`).

The SecureAgent lives in Services (built once per app); these tools authorize the caller, pass the
progress reporter and the client's name, and shape the result. The agent's own tool calls go through
the same MCP tool implementations (and so the same scope checks) as a client's."""

from __future__ import annotations

import copy
import json
import time
from typing import Annotated, Any, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from ...agent.loop import AgentConfigError, AgentRunError, SecureAgent
from ...auth.scopes import Scope
from ...deps import Services
from ...observability.metrics import TOOL_CALLS, TOOL_SECONDS
from ...profiles.effective import TenantProfile
from .calls import require
from .files import TOOL_SCOPES, Workspace
from .gate import caller_profile

AGENT = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False, openWorldHint=True)
CONTROL = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True, openWorldHint=False)
ConversationId = Annotated[str, Field(min_length=1, max_length=40, description="Id returned by agent_run.")]
OK_STATUSES = ("completed", "awaiting_approval")


def client_name(ctx: Context | None) -> str | None:
    try:
        params = ctx.session.client_params if ctx is not None else None
        return params.client_info.name if params is not None else None
    except Exception:  # no session or no client info (stateless legacy): role falls back to default
        return None


def progress_reporter(ctx: Context | None):
    if ctx is None:
        return None

    async def report(step: int, total: int, message: str) -> None:
        await ctx.report_progress(step, total, message)

    return report


APPROVAL_KEY = "approval"


def can_ask(ctx: Context | None) -> bool:
    """A 2026-07-28 client that declared elicitation gets the approval question as input_required."""
    try:
        capabilities = ctx.client_capabilities if ctx is not None else None
        return (
            ctx is not None
            and ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
            and capabilities is not None
            and capabilities.elicitation is not None
        )
    except Exception:  # outside a request: no client to ask
        return False


def ask_client(result: dict[str, Any]) -> InputRequiredResult:
    """The paused run as an elicitation; the conversation and token ride in request_state (sealed by the
    SDK), so the client's retry of agent_run resumes it."""
    approval = result["approval"]
    message = (
        f"The agent wants to call {approval['tool']} with {approval['arguments']}. {approval['reason']}. "
        "Approve this action?"
    )
    schema = {
        "type": "object",
        "properties": {
            "approve": {"type": "boolean", "title": "Approve", "description": "Allow this action"}
        },
        "required": ["approve"],
    }
    request = ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))
    state = json.dumps({"conversation_id": result["conversation_id"], "token": approval["token"]})
    return InputRequiredResult(input_requests={APPROVAL_KEY: request}, request_state=state)


def approval_answer(ctx: Context | None) -> tuple[dict[str, str], str] | None:
    """(paused run, 'approve' | 'deny') when this call answers an earlier input_required round."""
    if ctx is None or not ctx.request_state or not ctx.input_responses:
        return None
    try:
        paused = json.loads(ctx.request_state)
        answer = ctx.input_responses.get(APPROVAL_KEY)
    except (ValueError, AttributeError) as exc:
        raise ToolError("request_state does not come from agent_run") from exc
    if not isinstance(paused, dict) or answer is None:
        return None
    accepted = getattr(answer, "action", None) == "accept" and bool(
        (getattr(answer, "content", None) or {}).get("approve")
    )
    return paused, "approve" if accepted else "deny"


def render(result: dict[str, Any]) -> CallToolResult:
    status = result["status"]
    lines = [f"status: {status} · conversation_id: {result['conversation_id']}"]
    if result.get("answer"):
        lines.append(result["answer"])
    if result.get("error"):
        lines.append(f"error: {result['error']}")
    if result.get("approval"):
        approval = result["approval"]
        lines.append(
            f"approval needed for {approval['tool']} ({approval['reason']}): call agent_approve with "
            f"conversation_id='{result['conversation_id']}', token='{approval['token']}', decision 'approve' or 'deny'"
        )
    for action in result.get("actions", []):
        lines.append(f"- {action['tool']}({action['args']}) -> {action['decision']}: {action['outcome']}")
    usage = result.get("usage", {})
    lines.append(f"usage: {json.dumps(usage)}")
    return CallToolResult(
        content=[TextContent(type="text", text="\n".join(lines))],
        structured_content=result,
        is_error=status not in OK_STATUSES,
    )


def tenant_agent(agent: SecureAgent, profile: TenantProfile | None) -> SecureAgent:
    """The app's SecureAgent seen through the caller's AgentProfile: its supervisor policy, model roles,
    client mapping and budgets (profiles/effective.py). A shallow copy that differs only in `settings`:
    the conversation store, audit log, provider factory and the provider cache (`_providers`, keyed by
    the providers of the settings, which a profile cannot change) stay shared with the app's agent."""
    if profile is None or profile.agent == agent.settings:
        return agent
    view = copy.copy(agent)
    view.settings = profile.agent
    return view


def register(mcp: MCPServer, services: Services) -> None:
    TOOL_SCOPES.update({"agent_run": Scope.AGENT.value, "agent_approve": Scope.AGENT.value,
                        "agent_cancel": Scope.AGENT.value})  # fmt: skip
    if services.agent is not None:
        services.agent.mcp = mcp

    def agent_for(tool: str):
        principal = require(Scope.AGENT, tool)
        if services.agent is None:
            raise ToolError("the agent is not available in this deployment")
        return principal, tenant_agent(services.agent, caller_profile(services))

    async def counted(tool: str, call) -> CallToolResult:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await call()
            outcome = "rejected" if getattr(result, "is_error", False) else "ok"
            return result
        except (AgentConfigError, AgentRunError) as exc:
            outcome = "rejected"
            raise ToolError(str(exc)) from exc
        except ToolError:
            outcome = "denied"
            raise
        finally:
            TOOL_CALLS.labels(tool=tool, outcome=outcome).inc()
            TOOL_SECONDS.labels(tool=tool).observe(time.perf_counter() - started)

    @mcp.tool(name="agent_run", title="Run the SecureAgent", annotations=AGENT)
    async def agent_run(
        prompt: Annotated[
            str, Field(min_length=1, max_length=100_000, description="What the agent should do.")
        ],
        conversation_id: Annotated[
            str | None,
            Field(max_length=40, description="Continue this conversation; omitted starts a new one."),
        ] = None,
        role: Annotated[
            str | None, Field(max_length=64, description="Model role (settings agent.roles).")
        ] = None,
        max_steps: Annotated[
            int | None, Field(ge=1, le=500, description="Most model turns for this run.")
        ] = None,
        timeout_s: Annotated[float | None, Field(gt=0, description="Wall-time limit of this run.")] = None,
        workspace: Workspace = None,
        ctx: Context | None = None,
    ) -> CallToolResult | InputRequiredResult:
        """Give the SecureAgent a task in your sandboxed workspace. It reads, edits and runs commands through
        the workspace tools, each call checked by the supervisor policy, until it answers or a budget ends.
        Returns the answer, the actions taken, token usage and the conversation_id to continue with. A call
        that needs a human decision pauses the run and returns an approval token for agent_approve
        (2026-07-28 clients that declare elicitation are asked directly, through input_required)."""
        principal, agent = agent_for("agent_run")

        async def call() -> CallToolResult | InputRequiredResult:
            answered = approval_answer(ctx)
            if answered is not None:  # the retry of an input_required round: resume with the human's answer
                paused, decision = answered
                result = await agent.approve(
                    principal,
                    paused["conversation_id"],
                    paused["token"],
                    decision,
                    progress=progress_reporter(ctx),
                )
            else:
                result = await agent.run(
                    principal, prompt, conversation_id=conversation_id, role=role, max_steps=max_steps,
                    timeout_s=timeout_s, workspace=workspace, client_name=client_name(ctx),
                    progress=progress_reporter(ctx),
                )  # fmt: skip
            if result["status"] == "awaiting_approval" and can_ask(ctx):
                return ask_client(result)
            return render(result)

        return await counted("agent_run", call)

    @mcp.tool(name="agent_approve", title="Approve or deny a paused agent action", annotations=CONTROL)
    async def agent_approve(
        conversation_id: ConversationId,
        token: Annotated[
            str, Field(min_length=1, max_length=128, description="The token agent_run returned.")
        ],
        decision: Literal["approve", "deny"],
        ctx: Context | None = None,
    ) -> CallToolResult:
        """Decide the action a paused agent run asked about; the run then continues (and returns like agent_run)."""
        principal, agent = agent_for("agent_approve")

        async def call() -> CallToolResult:
            return render(
                await agent.approve(
                    principal, conversation_id, token, decision, progress=progress_reporter(ctx)
                )
            )

        return await counted("agent_approve", call)

    @mcp.tool(name="agent_cancel", title="Cancel a running agent run", annotations=CONTROL)
    async def agent_cancel(conversation_id: ConversationId) -> dict[str, Any]:
        """Stop the run working on this conversation (from any process): the loop ends and a running
        command is killed; the transcript so far stays saved."""
        principal, agent = agent_for("agent_cancel")
        try:
            requested = await agent.cancel(principal, conversation_id)
        except AgentRunError as exc:
            raise ToolError(str(exc)) from exc
        return {"conversation_id": conversation_id, "cancel_requested": requested}
