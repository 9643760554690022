"""Conversation tools (scope `agent`): list, get and delete the agent conversations of your tenant."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from ...auth.scopes import Scope
from ...deps import Services
from ...store.conversations import ConversationStore
from .calls import require
from .files import TOOL_SCOPES

READ = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
DELETE = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)
ConversationId = Annotated[str, Field(min_length=1, max_length=40, description="Id returned by agent_run.")]


def register(mcp: MCPServer, services: Services) -> None:
    TOOL_SCOPES.update(
        {name: Scope.AGENT.value for name in ("conversation_list", "conversation_get", "conversation_delete")}
    )
    conversations = ConversationStore(services.store)

    @mcp.tool(name="conversation_list", title="List agent conversations", annotations=READ)
    async def conversation_list(
        limit: Annotated[
            int, Field(ge=1, le=500, description="Most conversations returned, newest first.")
        ] = 50,
    ) -> dict[str, Any]:
        """Your tenant's agent conversations, most recently active first."""
        principal = require(Scope.AGENT, "conversation_list")
        rows = await conversations.list(principal.tenant, limit)
        return {"conversations": [row.summary() for row in rows]}

    @mcp.tool(name="conversation_get", title="Read an agent conversation", annotations=READ)
    async def conversation_get(conversation_id: ConversationId) -> dict[str, Any]:
        """One conversation with its full transcript: prompts, model replies, tool calls, supervisor
        decisions and tool results."""
        principal = require(Scope.AGENT, "conversation_get")
        info = await conversations.get(principal.tenant, conversation_id)
        if info is None:
            raise ToolError(f"no conversation '{conversation_id}' in your tenant")
        pending = None
        if info.pending:
            pending = {"tool": info.pending.get("tool"), "reason": info.pending.get("reason")}
        return {
            **info.summary(),
            "pending_approval": pending,
            "transcript": await conversations.messages(principal.tenant, conversation_id),
        }

    @mcp.tool(name="conversation_delete", title="Delete an agent conversation", annotations=DELETE)
    async def conversation_delete(conversation_id: ConversationId) -> dict[str, Any]:
        """Delete a conversation and its transcript."""
        principal = require(Scope.AGENT, "conversation_delete")
        deleted = await conversations.delete(principal.tenant, conversation_id)
        if not deleted:
            raise ToolError(f"no conversation '{conversation_id}' in your tenant")
        if services.audit is not None:
            await services.audit.record(
                "agent.conversation_delete",
                actor=principal.key_id,
                tenant=principal.tenant,
                target=conversation_id,
            )
        return {"conversation_id": conversation_id, "deleted": True}
