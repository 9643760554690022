"""Authentication and tenancy on /mcp: attacks on the bearer check and on tenant isolation."""

from __future__ import annotations

import pytest
from mcp_api.auth.api_keys import ApiKeyService, generate_key
from mcp_api.auth.scopes import parse_scopes
from mcp_api.store.store import Store
from mcp_helpers import Mcp

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (None, "Missing Authorization header"),
        ("Basic dXNlcjpwYXNz", "must be 'Bearer"),
        ("Bearer ", "must be 'Bearer"),
        ("Bearer not-a-key", "invalid or revoked"),
        ("Bearer sa_testkey0000A_" + "x" * 43, "invalid or revoked"),  # right id, wrong secret
    ],
)
async def test_bad_credentials_get_401_with_challenge(http, header, fragment):
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if header is not None:
        headers["authorization"] = header
    response = await http.post(
        "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="secure-agent"')
    assert fragment in response.json()["error"]["message"]


async def test_revoked_key_is_refused_immediately(app, http):
    keys = app.state.services.keys
    key, info = await keys.create("dev", "temp", ["files:read"])
    client = Mcp(http=http, key=key)
    assert "result" in await client.request("tools/list")
    await keys.revoke(info.key_id)
    response = await client.post("tools/list")
    assert response.status_code == 401


async def test_tool_outside_scopes_is_refused_with_the_missing_scope(app, http, workspace):
    (workspace / "a.txt").write_text("hello")
    key, _ = await app.state.services.keys.create("dev", "reader", ["files:read"])
    reader = Mcp(http=http, key=key)
    ok = await reader.call("read_file", path="a.txt")
    assert not ok.get("isError")
    denied = await reader.call("write_file", path="a.txt", content="pwned")
    assert denied["isError"] is True
    assert "'files:write' scope" in denied["content"][0]["text"]
    assert (workspace / "a.txt").read_text() == "hello"


async def test_tenants_never_see_each_others_workspaces(app, http, settings, workspace):
    (workspace / "secret.txt").write_text("dev tenant data")
    key, _ = await app.state.services.keys.create("other", "o", ["files:read", "files:write"])
    other = Mcp(http=http, key=key)
    listing = await other.call("list_directory", path=".")
    assert listing["structuredContent"]["entries"] == []
    missing = await other.call("read_file", path="secret.txt")
    assert missing["isError"] and "not_found" in missing["content"][0]["text"]
    await other.call("write_file", path="mine.txt", content="other data")
    assert (settings.workspaces_dir / "other" / "default" / "mine.txt").read_text() == "other data"
    assert not (workspace / "mine.txt").exists()


async def test_keys_are_stored_as_salted_hashes(tmp_path):
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    await store.create_schema()
    service = ApiKeyService(store)
    key, info = await service.create("t1", "k", ["files:read"])
    secret = key.split("_", 2)[2]
    raw = (tmp_path / "s.db").read_bytes()
    assert secret.encode() not in raw and key.encode() not in raw
    principal = await service.verify(key)
    assert principal is not None and principal.tenant == "t1" and principal.scopes == {"files:read"}
    # Same secret, two keys: different salts give different hashes.
    again, _ = await service.create("t1", "k2", ["files:read"], key=f"sa_{'B' * 12}_{secret}")
    rows = await service.list("t1")
    assert len(rows) == 2
    await store.aclose()


async def test_key_creation_validates_input(tmp_path):
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    await store.create_schema()
    service = ApiKeyService(store)
    with pytest.raises(ValueError, match="tenant 'Bad Tenant' is invalid"):
        await service.create("Bad Tenant", "k", ["files:read"])
    with pytest.raises(ValueError, match="unknown scope"):
        await service.create("t", "k", ["files:read", "root"])
    with pytest.raises(ValueError, match="must look like"):
        await service.create("t", "k", ["files:read"], key="short")
    key = generate_key()
    await service.create("t", "k", ["admin"], key=key)
    with pytest.raises(ValueError, match="already exists"):
        await service.create("t", "k", ["admin"], key=key)
    with pytest.raises(KeyError, match="no API key with id"):
        await service.revoke("nope")
    assert await service.verify("sa_" + "Z" * 12 + "_" + "q" * 30) is None
    await store.aclose()


def test_scope_parsing():
    assert parse_scopes("files:read, exec files:read") == ("files:read", "exec")
    with pytest.raises(ValueError):
        parse_scopes(["superuser"])
