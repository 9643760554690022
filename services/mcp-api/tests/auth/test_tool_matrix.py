"""Every tool the server lists, tried by every kind of caller: no key, each single scope, another
tenant. Tools are taken from tools/list, so tools added later are covered without editing this file."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import httpx
import pytest
from hypothesis import strategies as st
from mcp_api.settings import Settings
from mcp_helpers import TEST_KEY, Mcp

pytestmark = pytest.mark.anyio
SECRET = "TOP-SECRET-OF-TENANT-DEV"
SCOPES = ("files:read", "files:write", "exec", "agent", "admin")


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = root.get("$defs", {}).get(name) or root.get("definitions", {}).get(name, {})
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        schema = _resolve(options[0], root) if options else {"type": "null"}
    return schema


def value_for(name: str, schema: dict, root: dict, path: str):
    schema = _resolve(schema, root)
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "string":
        if name in ("command", "cmd", "shell", "script"):
            value = f"cat {path}; ls -la ..; cat /proc/self/environ"
        elif name == "workspace":
            value = "default"
        else:
            value = path
        return fit_string(value, schema)
    if kind in ("integer", "number"):
        return max(int(schema.get("minimum", 1)), 1)
    if kind == "boolean":
        return False
    if kind == "array":
        item = _resolve(schema.get("items", {}), root)
        if item.get("type") == "string":
            return ["cat", path]
        return [value_for(name, item, root, path)]
    if kind == "object":
        props = schema.get("properties", {})
        return {k: value_for(k, props[k], root, path) for k in schema.get("required", [])}
    return path


def fit_string(value: str, schema: dict) -> str:
    """`value`, bent to the schema's length and pattern so the call passes validation and reaches the
    tool's own checks (scope first)."""
    low, high = schema.get("minLength", 0), schema.get("maxLength", 1 << 20)
    value = (value + "x" * max(0, low - len(value)))[:high]
    pattern = schema.get("pattern")
    if pattern and not re.fullmatch(pattern, value):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = st.from_regex(pattern, fullmatch=True).filter(lambda v: low <= len(v) <= high).example()
    return value


def arguments_for(tool: dict, path: str) -> dict:
    schema = tool["inputSchema"]
    props = schema.get("properties", {})
    arguments = {name: value_for(name, props[name], schema, path) for name in schema.get("required", [])}
    if "shell" in props and not {"shell", "command"} & set(arguments):  # "one of command or shell" tools
        arguments["shell"] = value_for("shell", props["shell"], schema, path)
    return arguments


async def tools(http) -> list[dict]:
    message = await Mcp(http=http).request("tools/list")
    return message["result"]["tools"]


async def call(client: Mcp, tool: str, arguments: dict) -> dict:
    message = await client.request("tools/call", {"name": tool, "arguments": arguments}, name=tool)
    return message.get("result") or {"isError": True, "content": [{"type": "text", "text": str(message)}]}


@pytest.fixture
def settings(tmp_path) -> Settings:
    # Hundreds of calls in a few seconds from one key: rate limits are tested elsewhere.
    return Settings(data_dir=tmp_path / "data", dev_api_key=TEST_KEY, rate_limits={"enabled": False})


async def test_no_credentials_get_401_on_every_mcp_route(http):
    for method in ("GET", "POST", "DELETE"):
        response = await http.request(method, "/mcp", json={} if method == "POST" else None,
                                      headers={"content-type": "application/json", "accept": "application/json, text/event-stream"})  # fmt: skip
        assert response.status_code == 401, method


async def test_every_tool_needs_exactly_one_scope(app, http, workspace):
    (workspace / "f.txt").write_text("content")
    keys = {}
    for scope in SCOPES:
        keys[scope], _ = await app.state.services.keys.create("dev", scope.replace(":", "-"), [scope])
    listed = await tools(http)
    assert len(listed) >= 11
    for tool in listed:
        allowed = []
        for scope in SCOPES:
            result = await call(Mcp(http=http, key=keys[scope]), tool["name"], arguments_for(tool, "f.txt"))
            text = " ".join(c.get("text", "") for c in result.get("content", []))
            if "permission denied" in text:
                assert result["isError"] and "scope" in text, text
            else:
                allowed.append(scope)
        assert len(allowed) == 1, (tool["name"], allowed)


async def test_another_tenant_can_never_reach_tenant_dev_with_any_tool(app, http, settings, workspace):
    (workspace / "secret.txt").write_text(SECRET)
    (workspace / "sub").mkdir()
    (workspace / "sub" / "inner.txt").write_text(SECRET)
    before = sorted(
        (p.relative_to(workspace), p.read_bytes() if p.is_file() else None) for p in workspace.rglob("*")
    )
    key, _ = await app.state.services.keys.create("other", "all", list(SCOPES))
    intruder = Mcp(http=http, key=key)
    paths = ["secret.txt", "sub/inner.txt", "sub", "../dev/default/secret.txt", "../../dev/default/secret.txt",
             str(workspace / "secret.txt"), "/" + str(workspace.relative_to("/")), "../../../" * 8 + str(workspace)]  # fmt: skip
    listed = await tools(http)
    for tool in listed:
        for path in paths:
            for workspace_name in (None, "default", "../dev/default", "dev"):
                arguments = arguments_for(tool, path)
                if workspace_name and "workspace" in tool["inputSchema"].get("properties", {}):
                    arguments["workspace"] = workspace_name
                result = await call(intruder, tool["name"], arguments)
                assert SECRET not in str(result), (tool["name"], path, workspace_name)
    after = sorted(
        (p.relative_to(workspace), p.read_bytes() if p.is_file() else None) for p in workspace.rglob("*")
    )
    assert after == before
    # Whatever the intruder did landed in its own tenant's directory, never in another one.
    tenants = {p.name for p in settings.workspaces_dir.iterdir()}
    assert tenants <= {"dev", "other"}


REVOKE = """
import asyncio, sys
from mcp_api.auth.api_keys import ApiKeyService
from mcp_api.store.store import Store

async def run(url, key_id):
    store = Store(url)
    await ApiKeyService(store).revoke(key_id, actor="test")
    await store.aclose()

asyncio.run(run(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.integration
def test_revoked_key_is_refused_at_once_by_every_process(server_factory, tmp_path):
    shared = tmp_path / "shared"
    first = server_factory({"SECURE_AGENT_DATA_DIR": str(shared)})
    second = server_factory({"SECURE_AGENT_DATA_DIR": str(shared)})
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"authorization": f"Bearer {first.api_key}", "content-type": "application/json",
               "accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}  # fmt: skip
    for server in (first, second):
        assert httpx.post(server.url, json=body, headers=headers, timeout=10).status_code == 200
    key_id = first.api_key.split("_")[1]
    url = f"sqlite+aiosqlite:///{shared / 'secure-agent.db'}"
    subprocess.run([sys.executable, "-c", REVOKE, url, key_id], check=True, timeout=60)
    for server in (first, second):
        assert httpx.post(server.url, json=body, headers=headers, timeout=10).status_code == 401
