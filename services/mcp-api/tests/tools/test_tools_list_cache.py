"""tools/list is built once and reused until the registered tools change; profile filtering still runs
on every request (so a profile change shows at once)."""

from __future__ import annotations

import pytest
from mcp_helpers import Mcp

pytestmark = pytest.mark.anyio


async def _names(http) -> list[str]:  # noqa: ANN001
    message = await Mcp(http=http).request("tools/list")
    return [tool["name"] for tool in message["result"]["tools"]]


async def test_tools_list_is_cached_and_rebuilt_when_tools_change(app, http):
    server = app.state.mcp
    first = await server.list_tools()
    second = await server.list_tools()
    assert [t.name for t in first] == [t.name for t in second]
    assert all(a is b for a, b in zip(first, second, strict=True))  # the same built objects
    assert "bench_probe_tool" not in await _names(http)

    @server.tool(name="bench_probe_tool")
    async def bench_probe_tool() -> str:
        return "ok"

    assert "bench_probe_tool" in await _names(http)  # registered after the cache was built
    server.remove_tool("bench_probe_tool")
    assert "bench_probe_tool" not in await _names(http)


async def test_profile_filtering_applies_to_the_cached_list(app, http, monkeypatch):
    from mcp_api.mcp import server as server_module

    everything = await _names(http)
    monkeypatch.setattr(
        server_module, "allowed_tools", lambda services, tools: [t for t in tools if t.name == "read_file"]
    )
    assert await _names(http) == ["read_file"]
    monkeypatch.undo()
    assert await _names(http) == everything
