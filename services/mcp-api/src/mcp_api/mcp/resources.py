"""Workspace files as MCP resources: `workspace://{path}` in the caller's default workspace."""

from __future__ import annotations

import base64
from urllib.parse import quote

from agent_runner import protocol as p
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import Resource

from ..auth.scopes import Scope
from ..deps import Services
from .tools.calls import run_op

URI_PREFIX = "workspace://"
# resources/list is a convenience index, not a crawler: big workspaces are reached with find_files.
MAX_LISTED = 500


def workspace_uri(path: str) -> str:
    return URI_PREFIX + quote(path, safe="/._-~")


async def list_workspace_resources(services: Services) -> list[Resource]:
    try:
        found: p.FindFilesResult = await run_op(
            services, "resources/list", Scope.FILES_READ, None, "files/find",
            p.FindFilesRequest(pattern="*", max_results=MAX_LISTED),
        )  # fmt: skip
    except ToolError:
        # No files:read scope (or no workspace yet) simply means nothing to list.
        return []
    return [
        Resource(uri=workspace_uri(path), name=path, title=path.rsplit("/", 1)[-1]) for path in found.matches
    ]


def register(mcp: MCPServer, services: Services) -> None:
    @mcp.resource(
        "workspace://{+path}",
        name="workspace-file",
        title="Workspace file",
        description="A file in your default workspace, addressed by its path relative to the workspace root.",
    )
    async def workspace_file(path: str) -> str | bytes:
        try:
            result: p.ReadFileResult = await run_op(
                services, "resources/read", Scope.FILES_READ, None, "files/read",
                p.ReadFileRequest(path=path, max_bytes=p.MAX_READ_BYTES),
            )  # fmt: skip
        except ToolError as exc:
            raise ResourceError(str(exc)) from exc
        if result.encoding == "base64":
            return base64.b64decode(result.content)
        return result.content
