"""Prompts offered to clients."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio


async def test_prompts_list_and_get(mcp):
    prompts = {p["name"]: p for p in (await mcp.request("prompts/list"))["result"]["prompts"]}
    assert {"review_changes", "explain_file", "find_todos"} <= set(prompts)
    assert prompts["explain_file"]["arguments"][0]["name"] == "path"
    got = await mcp.request(
        "prompts/get", {"name": "explain_file", "arguments": {"path": "src/x.py"}}, name="explain_file"
    )
    assert "src/x.py" in got["result"]["messages"][0]["content"]["text"]


async def test_missing_prompt_argument_is_an_error(mcp):
    got = await mcp.request("prompts/get", {"name": "explain_file", "arguments": {}}, name="explain_file")
    assert "error" in got
