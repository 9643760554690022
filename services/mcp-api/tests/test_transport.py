"""The /mcp transport: both eras, JSON or SSE by Accept, Host/Origin allowlists, malformed input."""

from __future__ import annotations

import pytest
from mcp_helpers import LEGACY, MODERN, TEST_KEY, Mcp, parse_rpc

pytestmark = pytest.mark.anyio

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
BOTH = "application/json, text/event-stream"


async def test_legacy_initialize_negotiates_and_needs_no_session(http):
    client = Mcp(http=http)
    init = await client.request(
        "initialize",
        {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "pytest", "version": "1"}},
    )
    assert init["result"]["protocolVersion"] == LEGACY
    assert init["result"]["serverInfo"]["name"] == "secure-agent"
    # Stateless: a follow-up without any Mcp-Session-Id is served (any worker can answer it).
    tools = await client.request("tools/list")
    assert "read_file" in {t["name"] for t in tools["result"]["tools"]}


@pytest.mark.parametrize("version", ["2025-03-26", "2025-06-18", "2025-11-25"])
async def test_every_legacy_revision_is_accepted(http, version):
    response = await http.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        headers={**AUTH, "accept": BOTH},
    )  # fmt: skip
    assert response.status_code == 200
    assert parse_rpc(response)["result"]["protocolVersion"] == version


async def test_modern_discover(http):
    client = Mcp(http=http, era="modern")
    found = await client.request("server/discover")
    assert MODERN in found["result"]["supportedVersions"]


async def test_modern_header_body_mismatch_is_rejected(http):
    client = Mcp(http=http, era="modern")
    body = client.body("tools/call", {"name": "read_file", "arguments": {"path": "x"}})
    headers = client.headers("tools/call", name="write_file")
    response = await http.post("/mcp", json=body, headers=headers)
    assert response.status_code == 400
    assert parse_rpc(response)["error"]["code"] == -32020


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_response_format_follows_accept(http, era):
    if era == "legacy":
        # Accepting both lets the server stream; legacy calls always answer as SSE then.
        sse = Mcp(http=http, era=era, accept=BOTH)
        response = await sse.post("tools/list")
        assert response.headers["content-type"].startswith("text/event-stream")
    plain = Mcp(http=http, era=era, accept="application/json")
    response = await plain.post("tools/list")
    assert response.headers["content-type"].startswith("application/json")
    assert "tools" in response.json()["result"]


async def test_accepting_neither_json_nor_sse_is_406(http):
    client = Mcp(http=http, accept="text/html")
    response = await client.post("tools/list")
    assert response.status_code == 406


async def test_malformed_json_is_a_parse_error(http):
    response = await http.post(
        "/mcp", content=b"{not json", headers={**AUTH, "content-type": "application/json", "accept": BOTH}
    )
    assert response.status_code == 400
    assert parse_rpc(response)["error"]["code"] == -32700


async def test_wrong_content_type_is_rejected(http):
    response = await http.post(
        "/mcp", content=b"{}", headers={**AUTH, "content-type": "text/plain", "accept": BOTH}
    )
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]["message"]


async def test_unknown_method_is_method_not_found(mcp):
    message = await mcp.post("no/such/method")
    assert parse_rpc(message)["error"]["code"] == -32601


async def test_unknown_tool_is_a_clear_error(mcp):
    message = await mcp.request("tools/call", {"name": "nope", "arguments": {}}, name="nope")
    text = message["error"]["message"] if "error" in message else message["result"]["content"][0]["text"]
    assert "nope" in text


async def test_arguments_failing_the_schema_are_rejected(mcp):
    message = await mcp.request(
        "tools/call", {"name": "read_file", "arguments": {"path": 7}}, name="read_file"
    )
    text = message["error"]["message"] if "error" in message else message["result"]["content"][0]["text"]
    assert "path" in text


async def test_foreign_host_is_rejected(http):
    response = await http.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"accept": BOTH, "host": "evil.example.com"},
    )
    # Refused before auth is tried, with the setting that fixes it named.
    assert response.status_code == 421
    assert "SECURE_AGENT_ALLOWED_HOSTS" in response.json()["error"]["message"]


async def test_foreign_origin_is_rejected(http):
    response = await http.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={**AUTH, "accept": BOTH, "origin": "http://evil.example.com"},
    )
    assert response.status_code == 403
    assert "SECURE_AGENT_ALLOWED_ORIGINS" in response.json()["error"]["message"]


async def test_configured_host_patterns(tmp_path):
    import httpx
    from mcp_api.app import create_app
    from mcp_api.settings import Settings

    settings = Settings(
        data_dir=tmp_path / "d", dev_api_key=TEST_KEY,
        allowed_hosts=["mcp.example.com", "mcp.example.com:*"], allowed_origins=["https://app.example.com"],
    )  # fmt: skip
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mcp.example.com:8443") as http:
            client = Mcp(http=http)
            assert (await client.post("ping")).status_code == 200
            local = await http.post(
                "/mcp", json={}, headers={**AUTH, "host": "localhost:8080", "accept": BOTH}
            )
            assert local.status_code == 421
            ok_origin = await http.post(
                "/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                headers={**client.headers("ping"), "origin": "https://app.example.com"},
            )
            assert ok_origin.status_code == 200
            port_pattern = await http.post(
                "/mcp", json={}, headers={**AUTH, "host": "mcp.example.com:x", "accept": BOTH}
            )
            assert port_pattern.status_code == 421


async def test_local_origin_is_allowed(http):
    response = await http.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={**AUTH, "accept": BOTH, "origin": "http://localhost:6274", "mcp-protocol-version": LEGACY},
    )
    assert response.status_code == 200


async def test_notification_is_accepted_without_body(http):
    response = await http.post(
        "/mcp",
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers={**AUTH, "accept": BOTH, "mcp-protocol-version": LEGACY},
    )
    assert response.status_code == 202


async def test_stateful_legacy_sessions_follow_their_manager(tmp_path):
    """In 'stateful' mode a session created by a JSON-only client stays reachable when a later request
    also accepts SSE (which would otherwise pick the SSE manager): it lives where it was created."""
    import httpx
    from mcp_api.app import create_app
    from mcp_api.settings import Settings

    app = create_app(Settings(data_dir=tmp_path / "d", dev_api_key=TEST_KEY, legacy_sessions="stateful"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as http:
            json_only = Mcp(http=http, accept="application/json")
            init = await json_only.post(
                "initialize",
                {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
            )
            session = init.headers["mcp-session-id"]
            both = Mcp(http=http)
            headers = {**both.headers("tools/list"), "mcp-session-id": session}
            listed = await http.post("/mcp", json=both.body("tools/list"), headers=headers)
            assert listed.status_code == 200, listed.text
            assert "read_file" in {t["name"] for t in listed.json()["result"]["tools"]}
            unknown = await http.post("/mcp", json=both.body("tools/list"), headers={**headers, "mcp-session-id": "nope"})
            assert unknown.status_code == 404
