"""The tools/call fast lane (mcp/fastlane.py) answers exactly as the SDK's entry does.

Every case is sent twice on one app, once with the fast lane on and once off, with the same JSON-RPC
id; status, headers (but the request id) and body bytes must be equal, and the fast lane must have
served the first one itself (or, for what it must not take, left both to the SDK).
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Annotated

import httpx
import pytest
from agent_runner.workspace import read_cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_api.mcp import fastlane
from mcp_helpers import LEGACY, MODERN, TEST_KEY, parse_rpc
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import Field

pytestmark = pytest.mark.anyio

JSON = "application/json"
BOTH = "application/json, text/event-stream"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "pytest", "version": "1"},
}
# A 1x1 PNG: image content on one path, base64 structured content on the other.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class Spy:
    """Counts the requests the fast lane served itself."""

    def __init__(self, lane) -> None:
        self.lane = lane
        self.served = 0
        original = lane._run

        async def run(plan):
            self.served += 1
            return await original(plan)

        lane._run = run


@pytest.fixture
def spy(app) -> Spy:
    return Spy(app.state.fast_lane)


def request(era: str, name: str, arguments: dict | None = None, *, request_id=7, accept: str = JSON,
            meta: dict | None = None, headers: dict | None = None) -> tuple[dict, dict]:  # fmt: skip
    params: dict = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    head = {"content-type": JSON, "accept": accept, "authorization": f"Bearer {TEST_KEY}"}
    if era == "modern":
        params["_meta"] = dict(ENVELOPE) if meta is None else meta
        head |= {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": name}
    else:
        if meta is not None:
            params["_meta"] = meta
        head["mcp-protocol-version"] = LEGACY
    head |= headers or {}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}, head


async def both_ways(
    http: httpx.AsyncClient, spy: Spy, body, headers: dict, reset=lambda: None
) -> tuple[httpx.Response, bool]:
    """(the response, whether the fast lane served it); asserts the SDK's answer is the same.
    `reset` puts the workspace back before each of the two sends (for tools that change it)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    before = spy.served
    spy.lane.enabled = True
    reset()
    fast = await http.post("/mcp", content=raw, headers=headers)
    served = spy.served == before + 1
    spy.lane.enabled = False
    try:
        reset()
        slow = await http.post("/mcp", content=raw, headers=headers)
    finally:
        spy.lane.enabled = True
    assert spy.served == before + served  # the SDK path never reaches the fast lane's server
    assert (fast.status_code, fast.content) == (slow.status_code, slow.content)
    assert _headers(fast) == _headers(slow)
    return fast, served


def _headers(response: httpx.Response) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in response.headers.multi_items() if k != "x-request-id")


@pytest.fixture
def files(workspace):
    (workspace / "notes.txt").write_text("".join(f"line {i} é 漢字 🙂 \x1f\n" for i in range(200)))
    (workspace / "image.png").write_bytes(PNG)
    (workspace / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (workspace / "dir").mkdir()
    (workspace / "dir" / "a.txt").write_text("alpha\n")
    (workspace / "del.txt").write_text("ascii but DEL \x7f and a tab\t\n")  # json.dumps escapes DEL
    return workspace


@pytest.mark.parametrize("accept", [JSON, BOTH])
@pytest.mark.parametrize("era", ["legacy", "modern"])
@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("read_file", {"path": "notes.txt"}),
        ("read_file", {"path": "notes.txt", "offset": 10, "limit": 5}),
        ("read_file", {"path": "notes.txt", "max_bytes": 100}),  # truncated
        ("read_file", {"path": "image.png"}),
        ("read_file", {"path": "blob.bin"}),
        ("read_file", {"path": "missing.txt"}),  # tool error from the runner
        ("read_file", {"path": "../etc/passwd"}),  # denied
        ("read_file", {"path": "notes.txt", "limit": 0}),  # argument validation
        ("read_file", {"path": 5}),
        ("read_file", {}),
        ("read_file", None),
        ("read_file", {"path": "notes.txt", "unknown": True}),
        ("read_file", {"path": "dir/a.txt"}),  # plain ASCII: the answer is encoded by pydantic_core
        ("read_file", {"path": "del.txt"}),
        ("read_file", {"path": "notes.txt", "limit": 1.5}),
        ("list_directory", {"path": "dir"}),
        ("write_file", {"path": "dir/b.txt", "content": "beta ✓\n"}),
        ("write_file", {"path": "dir/b.txt", "content": "x", "overwrite": False}),  # exists: tool error
    ],
)
async def test_same_answer_as_the_sdk(http, spy, files, era, accept, name, arguments):
    body, headers = request(era, name, arguments, accept=accept)

    def reset():
        target = files / "dir" / "b.txt"
        if arguments and arguments.get("overwrite") is False:
            target.write_text("already here\n")
        else:
            target.unlink(missing_ok=True)

    response, served = await both_ways(http, spy, body, headers, reset)
    assert served
    assert response.status_code == 200
    stream = era == "legacy" and accept == BOTH
    assert response.headers["content-type"] == ("text/event-stream" if stream else JSON)
    assert parse_rpc(response)["id"] == 7


@pytest.mark.parametrize("accept", [JSON, BOTH])
@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_hot_reads_answer_alike(app, http, spy, files, era, accept, monkeypatch):
    """Answers built once from a hot read (runners/hot_reads.py, mcp/answers.py) and encoded once by the
    fast lane: byte for byte the SDK's, whatever the file, the window and the request id."""
    monkeypatch.setattr(read_cache, "SETTLE_NS", 0)  # every file counts as settled
    cache = app.state.services.runners.hot_reads
    cases = [
        {"path": "notes.txt"}, {"path": "notes.txt", "offset": 10, "limit": 5}, {"path": "notes.txt", "max_bytes": 100},
        {"path": "image.png"}, {"path": "blob.bin"}, {"path": "./blob.bin"}, {"path": "dir/a.txt"}, {"path": "del.txt"},
    ]  # fmt: skip
    hits = cache.hits
    for arguments in cases:
        for request_id in (7, "ü", 2**53, "abc"):
            body, headers = request(era, "read_file", arguments, request_id=request_id, accept=accept)
            response, served = await both_ways(http, spy, body, headers)
            assert served and parse_rpc(response)["id"] == request_id
    assert cache.hits >= hits + len(cases) * 7  # all but the first read of each case answered by mcp-api
    assert len(spy.lane._encoded) >= len(cases) - 1  # ./blob.bin shares blob.bin's entry


async def test_a_hot_read_asked_for_under_each_legacy_revision_answers_as_the_sdk(app, http, spy, files, monkeypatch):
    """One shared answer, asked for under every legacy revision in turn, each held to the SDK's bytes.
    The SDK shapes a tools/call result alike in all of them today; the encoded answers are kept per
    revision anyway (shaping takes the revision), and this holds them to the SDK if that ever changes."""
    monkeypatch.setattr(read_cache, "SETTLE_NS", 0)
    cache = app.state.services.runners.hot_reads
    hits = cache.hits
    for version in (*HANDSHAKE_PROTOCOL_VERSIONS, *HANDSHAKE_PROTOCOL_VERSIONS):
        body, headers = request("legacy", "read_file", {"path": "dir/a.txt"}, headers={"mcp-protocol-version": version})
        response, served = await both_ways(http, spy, body, headers)
        assert served and response.status_code == 200
    assert cache.hits > hits


@pytest.mark.parametrize("era", ["legacy", "modern"])
@pytest.mark.parametrize("request_id", [0, -1, 2**53, "abc", "", "ü"])
async def test_ids_come_back_as_sent(http, spy, files, era, request_id):
    body, headers = request(era, "read_file", {"path": "dir/a.txt"}, request_id=request_id)
    response, served = await both_ways(http, spy, body, headers)
    assert served and response.json()["id"] == request_id


@pytest.mark.parametrize("accept", [JSON, BOTH])
@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_tool_failures_map_as_in_the_sdk(app, http, spy, files, era, accept):
    mcp = app.state.mcp

    @mcp.tool(name="raises_tool_error")
    async def raises_tool_error() -> str:
        raise ToolError("refused: nothing to do")

    @mcp.tool(name="crashes")
    async def crashes() -> str:
        raise RuntimeError("internal detail that must not leak")

    @mcp.tool(name="raises_mcp_error")
    async def raises_mcp_error() -> str:
        raise MCPError(code=-32602, message="bad thing")

    for name in ("raises_tool_error", "crashes", "raises_mcp_error"):
        body, headers = request(era, name, {}, accept=accept)
        response, served = await both_ways(http, spy, body, headers)
        assert served, name
        assert "internal detail" not in response.text


@pytest.mark.parametrize(
    ("era", "change"),
    [
        ("legacy", {"accept": "text/event-stream"}),  # 406 from the SDK
        ("modern", {"accept": "text/html"}),
        ("legacy", {"accept": ""}),
        ("legacy", {"meta": {"progressToken": "p1"}}),
        ("legacy", {"meta": ENVELOPE}),  # a modern envelope on the legacy wire
        ("modern", {"meta": {**ENVELOPE, "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}}),
        ("modern", {"meta": {**ENVELOPE, "progressToken": 3}}),
        ("modern", {"meta": {"io.modelcontextprotocol/protocolVersion": MODERN}}),  # half an envelope
        ("modern", {"headers": {"mcp-name": "write_file"}}),  # header and body disagree
        ("modern", {"headers": {"mcp-param-path": "dir/a.txt"}}),
        ("legacy", {"headers": {"mcp-session-id": "abc"}}),
        ("legacy", {"request_id": None}),
        ("legacy", {"request_id": True}),
        ("legacy", {"request_id": 1.5}),
        ("modern", {"request_id": [1]}),
    ],
)
async def test_what_it_leaves_to_the_sdk(http, spy, files, era, change):
    options = {k: v for k, v in change.items() if k in ("accept", "meta", "headers", "request_id")}
    body, headers = request(era, "read_file", {"path": "dir/a.txt"}, **options)
    _, served = await both_ways(http, spy, body, headers)
    assert not served


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[]",
        # UTF-16: json.loads would read it, the legacy transport's parser (UTF-8 only) does not.
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_file"}}).encode("utf-16"),
        json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_file"}}]).encode(),
        json.dumps({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "read_file"}}).encode(),
        json.dumps({"jsonrpc": "1.0", "id": 1, "method": "tools/call", "params": {"name": "read_file"}}).encode(),
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode(),
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "no_such_tool"}}).encode(),
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": "read_file"}).encode(),
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_file", "x": 1}}).encode(),
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "extra": 1, "params": {"name": "read_file"}}).encode(),
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_file", "arguments": []}}).encode(),
    ],
)  # fmt: skip
async def test_malformed_or_other_messages_go_to_the_sdk(http, spy, files, raw):
    _, headers = request("legacy", "read_file")
    # A valid call first, so a remembered verdict about the envelope cannot let a bad one through.
    good, _ = request("legacy", "read_file", {"path": "dir/a.txt"})
    assert (await both_ways(http, spy, good, headers))[1]
    _, served = await both_ways(http, spy, raw, headers)
    assert not served


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_a_long_call_with_an_sse_accept_keeps_the_stream_alive(app, http, spy, files, era, monkeypatch):
    # The SDK's window is 15 s; shortened here. A call that outlasts it gets an event stream with
    # keep-alive comments, then the answer (the SDK's shapes: its own pings, then the one message).
    monkeypatch.setattr(fastlane, "_WINDOW_S", 0.2)

    @app.state.mcp.tool(name="slow")
    async def slow() -> str:
        await asyncio.sleep(0.7)
        return "finally"

    body, headers = request(era, "slow", {}, accept=BOTH)
    response = await http.post("/mcp", json=body, headers=headers)
    assert spy.served == 1
    assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
    pings = [line for line in response.text.split("\r\n") if line.startswith(": ping")]
    assert len(pings) >= 2
    answer = parse_rpc(response)
    assert answer["id"] == 7 and answer["result"]["content"][0]["text"] == "finally"


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_a_tool_mirroring_a_parameter_into_a_header_is_left_to_the_sdk_on_the_modern_wire(
    app, http, spy, files, era
):
    # SEP-2243: the SDK checks Mcp-Param-* headers against such arguments (and requires them).
    @app.state.mcp.tool(name="mirrored")
    async def mirrored(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]) -> str:
        return region

    body, headers = request(era, "mirrored", {"region": "eu"})
    response, served = await both_ways(http, spy, body, headers)
    if era == "modern":
        assert not served and response.status_code == 400  # no Mcp-Param-Region header
    else:
        assert served and response.json()["result"]["content"][0]["text"] == "eu"


async def test_a_tool_that_takes_a_context_is_left_to_the_sdk(app, http, spy, files):
    @app.state.mcp.tool(name="reports_progress")
    async def reports_progress(ctx: Context) -> str:
        await ctx.report_progress(1, 2)
        return "done"

    body, headers = request("modern", "reports_progress", {})
    response, served = await both_ways(http, spy, body, headers)
    assert not served and response.json()["result"]["content"][0]["text"] == "done"


async def test_a_disallowed_tool_is_refused_on_the_fast_lane_too(app, http, spy, files, monkeypatch):
    # The AgentProfile gate: SecureAgentMCP.call_tool on the SDK's path, and the same check in
    # handle_call_tool_without_context on the fast lane's.
    from mcp_api.mcp import server as server_module

    def deny(services, name):
        raise ToolError(f"the tool {name!r} is not allowed by your AgentProfile")

    monkeypatch.setattr(server_module, "check_tool_allowed", deny)
    body, headers = request("modern", "read_file", {"path": "dir/a.txt"})
    response, served = await both_ways(http, spy, body, headers)
    assert served
    result = response.json()["result"]
    assert result["isError"] is True and "not allowed" in result["content"][0]["text"]


async def test_the_bare_handler_runs_without_its_context(app, http, spy, files, monkeypatch):
    mcp = app.state.mcp
    direct = []
    real = mcp.handle_call_tool_without_context

    async def counted(tool, params):
        direct.append(tool.name)
        return await real(tool, params)

    monkeypatch.setattr(mcp, "handle_call_tool_without_context", counted)
    body, headers = request("modern", "read_file", {"path": "dir/a.txt"})
    _, served = await both_ways(http, spy, body, headers)
    assert served and direct == ["read_file"]  # the lane's call; the SDK's path builds its Context


async def test_an_interceptor_on_tools_call_sees_fast_lane_calls_too(app, http, spy, files, monkeypatch):
    # An extension's interceptor replaces the registered handler with a wrapper: the lane then calls
    # that, not handle_call_tool_without_context, so the interceptor runs on both paths.
    mcp = app.state.mcp
    lowlevel = mcp._lowlevel_server
    entry = lowlevel.get_request_handler("tools/call")
    seen = []

    async def intercepted(ctx, params):
        seen.append(params.name)
        return await entry.handler(ctx, params)

    direct = []
    monkeypatch.setattr(mcp, "handle_call_tool_without_context", lambda *a: direct.append(a))
    lowlevel.add_request_handler("tools/call", entry.params_type, intercepted)
    try:
        body, headers = request("modern", "read_file", {"path": "dir/a.txt"})
        _, served = await both_ways(http, spy, body, headers)
    finally:
        lowlevel.add_request_handler("tools/call", entry.params_type, entry.handler)
    assert served and seen == ["read_file", "read_file"] and direct == []


async def test_unauthenticated_requests_never_reach_it(http, spy, files):
    body, headers = request("legacy", "read_file", {"path": "dir/a.txt"})
    headers["authorization"] = "Bearer sa_wrongkey0000_" + "x" * 43
    response, served = await both_ways(http, spy, body, headers)
    assert response.status_code == 401 and not served


@pytest.mark.parametrize("accept", [JSON, BOTH])
async def test_a_lone_surrogate_answers_alike(http, spy, files, accept):
    # The tool error echoes the path; pydantic_core cannot encode it, json.dumps escapes it. (The legacy
    # transport's parser refuses such a body, on both paths.)
    for era in ("legacy", "modern"):
        body, headers = request(era, "read_file", {"path": "\ud800.txt"}, accept=accept)
        response, served = await both_ways(http, spy, body, headers)
        assert served is (era == "modern")
        assert b"\\ud800" in response.content or era == "legacy"


_texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=False), _texts)
_arguments = st.fixed_dictionaries(
    {},
    optional={
        "path": st.one_of(st.sampled_from(["notes.txt", "dir/a.txt", "image.png", "dir", "/abs", "a/../b"]), _values),
        "offset": _values,
        "limit": _values,
        "max_bytes": _values,
        "workspace": st.one_of(st.sampled_from(["default", "other", "../x", "Bad Name"]), _values),
        "extra": _values,
    },
)


_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.sampled_from(["\x7f", "\ud800", "~"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=12,
)


@given(value=_json_values)
def test_the_compact_encoder_writes_what_json_dumps_writes(value):
    assert fastlane._json_compact(value) == json.dumps(value, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "value",
    # A None key is "null" for json.dumps and "None" for pydantic_core; an enum only pydantic_core encodes.
    [{None: "none key"}, {1: "int key"}, {"t": (1, 2)}, [fastlane.StatusCode.ERROR], {"s": "x" * 10}],
    ids=["none-key", "int-key", "tuple", "enum", "plain"],
)
def test_the_compact_encoder_leaves_non_plain_values_to_json_dumps(value):
    try:
        expected = json.dumps(value, separators=(",", ":")).encode()
    except TypeError:
        with pytest.raises(TypeError):
            fastlane._json_compact(value)
    else:
        assert fastlane._json_compact(value) == expected


def test_the_compact_encoder_reports_a_cycle_as_json_dumps_does():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        fastlane._json_compact(loop)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(era=st.sampled_from(["legacy", "modern"]), accept=st.sampled_from([JSON, BOTH]), arguments=_arguments)
async def test_random_read_file_arguments_answer_alike(http, spy, files, era, accept, arguments):
    body, headers = request(era, "read_file", arguments, accept=accept)
    response, served = await both_ways(http, spy, body, headers)
    assert served
    assert response.status_code == 200


async def _call_then_leave(app, era: str, leave_after: float) -> tuple[list[dict], bool]:
    """Calls the slow tool over ASGI with an SSE Accept and goes away after `leave_after` s; returns
    what was sent and whether the tool saw its cancellation."""
    cancelled = asyncio.Event()

    @app.state.mcp.tool(name="slow")
    async def slow() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    body, headers = request(era, "slow", {}, accept=BOTH)
    raw = json.dumps(body).encode()
    head = [(b"host", b"localhost:8080"), (b"content-length", str(len(raw)).encode())]
    head += [(k.encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/mcp", "raw_path": b"/mcp", "query_string": b"", "root_path": "", "headers": head,
        "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 8080), "state": {},
    }  # fmt: skip
    messages = [{"type": "http.request", "body": raw, "more_body": False}]
    left = asyncio.Event()
    sent: list[dict] = []

    async def receive() -> dict:
        if messages:
            return messages.pop()
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    call = asyncio.ensure_future(app(scope, receive, send))
    await asyncio.sleep(leave_after)
    left.set()
    await asyncio.wait_for(call, 5)
    await asyncio.wait_for(cancelled.wait(), 5)
    return sent, cancelled.is_set()


def _answered(sent: list[dict]) -> bool:
    return any(b"event: message" in m.get("body", b"") or b'"result"' in m.get("body", b"") for m in sent)


@pytest.mark.parametrize("lane", [True, False], ids=["fast-lane", "sdk"])
async def test_a_client_leaving_inside_the_window_cancels_the_call(app, spy, files, monkeypatch, lane):
    monkeypatch.setattr(fastlane, "_WINDOW_S", 2.0)
    spy.lane.enabled = lane
    sent, cancelled = await _call_then_leave(app, "modern", 0.3)
    assert cancelled and not _answered(sent)
    assert spy.served == int(lane)


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_a_client_leaving_an_open_stream_cancels_the_call(app, spy, files, monkeypatch, era):
    monkeypatch.setattr(fastlane, "_WINDOW_S", 0.1)
    sent, cancelled = await _call_then_leave(app, era, 0.5)
    assert spy.served == 1 and cancelled
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert any(m.get("body", b"").startswith(b": ping") for m in sent[1:])  # the stream was open
    assert not _answered(sent)
