"""Request limits (headers, body, JSON shape, slow clients), security headers, CORS, no banner."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp_api.app import create_app
from mcp_api.security import limits as limits_module
from mcp_api.security.config import RequestLimitSettings
from mcp_api.settings import Settings
from mcp_helpers import TEST_KEY, Mcp

pytestmark = pytest.mark.anyio
HEADERS = {"authorization": f"Bearer {TEST_KEY}", "content-type": "application/json",
           "accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}  # fmt: skip


def nested(depth: int) -> str:
    return '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":' + "[" * depth + "]" * depth + "}}"


async def test_deep_json_is_refused(http):
    response = await http.post("/mcp", content=nested(200), headers=HEADERS)
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]["message"]
    fine = await http.post("/mcp", content=nested(10), headers=HEADERS)
    assert fine.status_code == 200


async def test_deep_json_inside_strings_is_not_counted(http):
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"x": "[" * 5000 + '\\"{'}}
    )
    assert (await http.post("/mcp", content=body, headers=HEADERS)).status_code == 200


async def test_too_many_containers_and_long_keys_are_refused(http):
    many = (
        '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":[' + ",".join(["[]"] * 100_001) + "]}}"
    )
    response = await http.post("/mcp", content=many, headers=HEADERS)
    assert response.status_code == 400 and "too many objects" in response.text
    long_key = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"k" * 300: 1}})
    response = await http.post("/mcp", content=long_key, headers=HEADERS)
    assert response.status_code == 400 and "key too long" in response.text


async def test_oversized_bodies_are_refused(tmp_path):
    settings = Settings(data_dir=tmp_path / "d", dev_api_key=TEST_KEY, max_request_bytes=64 * 1024)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost:8080"
        ) as http:
            big = json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"p": "x" * 70_000}}
            )
            response = await http.post("/mcp", content=big, headers=HEADERS)
            assert response.status_code == 413 and "too large" in response.json()["error"]["message"]

            async def chunks():  # no Content-Length: the size is counted as the body arrives
                for _ in range(10):
                    yield b"x" * 10_000

            response = await http.post("/mcp", content=chunks(), headers=HEADERS)
            assert response.status_code == 413
            # Unauthenticated clients never get their bodies read at all.
            response = await http.post("/mcp", content=big, headers={"content-type": "application/json"})
            assert response.status_code == 401


async def test_too_many_or_too_large_headers_get_431(http):
    many = HEADERS | {f"x-h{i}": "v" for i in range(120)}
    assert (await http.post("/mcp", json={}, headers=many)).status_code == 431
    large = HEADERS | {"x-big": "v" * 20_000}
    assert (await http.post("/mcp", json={}, headers=large)).status_code == 431


async def test_argument_lengths_follow_the_tool_schemas(http):
    result = await Mcp(http=http).call("read_file", path="a" * 5000)
    assert result["isError"] and "4096" in result["content"][0]["text"]


async def test_security_headers_on_every_response(http):
    for response in (await http.get("/health"), await http.post("/mcp", json={}, headers=HEADERS)):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "server" not in response.headers
        assert "strict-transport-security" not in response.headers  # plain http, no trusted proxy


async def test_cors_allowlist(http):
    preflight = await http.options("/mcp", headers={
        "origin": "http://localhost:5173", "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, mcp-protocol-version, x-evil"})  # fmt: skip
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
    allowed = preflight.headers["access-control-allow-headers"]
    assert "mcp-protocol-version" in allowed and "x-evil" not in allowed
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in preflight.headers
    response = await Mcp(http=http).http.post(
        "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers=HEADERS | {"origin": "http://localhost:5173"},
    )  # fmt: skip
    assert response.status_code == 200
    exposed = response.headers["access-control-expose-headers"]
    assert "Mcp-Session-Id" in exposed and "MCP-Protocol-Version" in exposed
    assert response.headers["vary"] == "Origin"
    foreign = await http.options(
        "/mcp", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
    )
    assert foreign.status_code == 403 and "access-control-allow-origin" not in foreign.headers
    post = await http.post("/mcp", json={}, headers=HEADERS | {"origin": "https://evil.example"})
    assert post.status_code == 403 and "access-control-allow-origin" not in post.headers


async def test_hsts_over_https_only_when_a_trusted_proxy_says_so(tmp_path):
    settings = Settings(data_dir=tmp_path / "d", dev_api_key=TEST_KEY, trusted_proxies=["127.0.0.1"])
    app = create_app(settings)

    async def get(peer: str, proto: str | None) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(peer, 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as client:
            return await client.get("/health", headers={"x-forwarded-proto": proto} if proto else {})

    async with app.router.lifespan_context(app):
        assert "max-age=63072000" in (await get("127.0.0.1", "https")).headers["strict-transport-security"]
        assert "strict-transport-security" not in (await get("127.0.0.1", "http")).headers
        assert "strict-transport-security" not in (await get("192.0.2.1", "https")).headers  # not a proxy
    https_app = create_app(Settings(data_dir=tmp_path / "e", public_url="https://mcp.example.com"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=https_app), base_url="http://localhost:8080"
    ) as c:
        assert "strict-transport-security" in (await c.get("/health")).headers


# --- the real server: slow clients, header floods, banner ------------------------------------------
def _connect(server) -> socket.socket:
    port = int(server.base_url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _read_all(conn: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.integration
def test_real_server_defends_against_slow_and_greedy_clients(server_factory):
    server = server_factory(
        {"SECURE_AGENT_LIMITS__HEADER_TIMEOUT_S": "1", "SECURE_AGENT_LIMITS__BODY_TIMEOUT_S": "1"}
    )
    # No Server banner.
    response = httpx.get(f"{server.base_url}/health")
    assert "server" not in response.headers and response.headers["x-content-type-options"] == "nosniff"
    # Slowloris: headers that never finish get 408 and the connection is closed.
    started = time.monotonic()
    with _connect(server) as conn:
        conn.sendall(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\n")
        answer = _read_all(conn)
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5
    # A connection that sends nothing at all is closed too.
    with _connect(server) as conn:
        assert _read_all(conn).startswith(b"HTTP/1.1 408")
    # Endless headers are cut off at the limit, before they are stored.
    with _connect(server) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        try:
            for i in range(200):
                conn.sendall(b"X-Flood-%d: %s\r\n" % (i, b"v" * 1000))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _read_all(conn).startswith(b"HTTP/1.1 431")
    # A body that trickles in too slowly gets 408.
    with _connect(server) as conn:
        conn.sendall(
            b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + server.api_key.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
        )
        answer = _read_all(conn)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    # The server is still fine.
    assert httpx.get(f"{server.base_url}/health").status_code == 200


# Tokens rather than characters, so that long keys, escaped quotes inside keys and stray quotes are common.
_TOKENS = st.sampled_from(["a", "bbbbbbb", '"', '\\"', "\\\\", "\\n", ":", ",", "{", "}", "[", " "])
_KEY_PARTS = st.lists(st.sampled_from(["bbbbbbb", "a", '\\"', "\\\\"]), max_size=8)
_BODIES = st.one_of(
    st.lists(_TOKENS, max_size=40).map("".join),
    st.tuples(st.lists(_TOKENS, max_size=8), _KEY_PARTS).map(
        lambda t: "".join(t[0]) + '{"' + "".join(t[1]) + '": 1}'
    ),
)


@given(_BODIES, st.integers(min_value=16, max_value=24))
@settings(max_examples=300, deadline=None)
def test_the_key_length_shortcut_refuses_exactly_what_the_full_scan_refuses(text, max_key_chars):
    """check_json_shape skips its key scan when no piece between quotes is longer than the limit and
    there are no escapes; on any body (valid JSON or not) it must refuse exactly the bodies the scan
    alone refuses."""
    body = text.encode()
    limits = RequestLimitSettings(max_key_chars=max_key_chars, max_json_nodes=10_000, max_json_depth=512)
    scan_refuses = any(len(m.group(1)) > max_key_chars for m in limits_module._KEY.finditer(body))
    try:
        limits_module.check_json_shape(body, limits)
        refused = False
    except limits_module.RequestRefused as exc:
        refused = "key too long" in exc.message
    assert refused == scan_refuses
