"""Prompts a user actually picks from a client's menu."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from pydantic import Field


def register(mcp: MCPServer) -> None:
    @mcp.prompt(
        name="review_changes",
        title="Review the changes in the workspace",
        description="Ask the model to review the workspace's code and report concrete problems, most serious first.",
    )
    def review_changes(
        focus: Annotated[
            str, Field(description="What to pay attention to, e.g. 'security' or 'tests'.")
        ] = "correctness",
    ) -> str:
        return (
            "Review the recent changes in my secure-agent workspace. Use list_directory and directory_tree to see "
            "what is there, grep and read_file to inspect the code, and report concrete problems with file and "
            f"line references, most serious first. Focus on {focus}. Do not modify any file."
        )

    @mcp.prompt(
        name="explain_file",
        title="Explain a file",
        description="Ask the model to read one file and explain its purpose, structure and how it is used.",
    )
    def explain_file(
        path: Annotated[str, Field(description="Path of the file, relative to the workspace root.")],
    ) -> str:
        return (
            f"Read workspace file '{path}' with read_file and explain what it does: its purpose, its main parts, "
            "how it is used by other files (use grep to find references), and anything surprising or risky."
        )

    @mcp.prompt(
        name="find_todos",
        title="Collect TODOs and FIXMEs",
        description="Ask the model to grep for TODO/FIXME/XXX markers and propose an order to address them.",
    )
    def find_todos() -> str:
        return (
            "Use grep with the pattern 'TODO|FIXME|XXX' over my workspace and group what you find by file, "
            "with a one-line summary of each item and a suggested order to address them."
        )
