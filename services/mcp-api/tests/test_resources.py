"""Workspace files as resources: list, template and read."""

from __future__ import annotations

import base64

import pytest
from mcp_helpers import Mcp, parse_rpc

pytestmark = pytest.mark.anyio


async def test_list_and_read_workspace_resources(mcp, workspace):
    (workspace / "docs").mkdir()
    (workspace / "docs" / "readme.md").write_text("# Hello\n")
    (workspace / "blob.bin").write_bytes(b"\x00\x01\x02")
    listed = (await mcp.request("resources/list"))["result"]["resources"]
    uris = {r["uri"] for r in listed}
    assert {"workspace://docs/readme.md", "workspace://blob.bin"} <= uris
    templates = (await mcp.request("resources/templates/list"))["result"]["resourceTemplates"]
    assert templates[0]["uriTemplate"] == "workspace://{+path}"
    text = await mcp.request(
        "resources/read", {"uri": "workspace://docs/readme.md"}, name="workspace://docs/readme.md"
    )
    assert text["result"]["contents"][0]["text"] == "# Hello\n"
    blob = await mcp.request("resources/read", {"uri": "workspace://blob.bin"}, name="workspace://blob.bin")
    assert base64.b64decode(blob["result"]["contents"][0]["blob"]) == b"\x00\x01\x02"


async def test_reading_outside_is_an_error(mcp, workspace):
    response = await mcp.post(
        "resources/read", {"uri": "workspace://../../etc/passwd"}, name="workspace://../../etc/passwd"
    )
    assert response.status_code in (200, 400)
    message = parse_rpc(response)
    assert message["error"]["code"] == -32602
    assert "root:" not in str(message)


async def test_resources_hidden_without_read_scope(app, http, workspace):
    (workspace / "x.txt").write_text("x")
    key, _ = await app.state.services.keys.create("dev", "exec-only", ["exec"])
    listed = await Mcp(http=http, key=key).request("resources/list")
    assert listed["result"]["resources"] == []
