"""Fuzzing the running server (a real uvicorn subprocess) with hypothesis.

* Random and mutated JSON-RPC on /mcp (wrong types, huge numbers, deep nesting, invalid UTF-8,
  unknown methods, mismatched headers, oversized bodies) never yields a 5xx or a crash, and the
  server's memory stays bounded.
* Random paths (`..`, NUL, unicode, very long names, symlink tricks) through every file tool never
  read or write outside the caller's workspace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

FUZZ_ENV = {"SECURE_AGENT_RATE_LIMITS__ENABLED": "false", "SECURE_AGENT_LOG_LEVEL": "WARNING"}
FAST = settings(
    max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=False
)
METHODS = ["initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read", "prompts/list",
           "prompts/get", "server/discover", "completion/complete", "logging/setLevel", "notifications/initialized",
           "resources/templates/list", "subscriptions/listen", "nope", "", "tools/call/../x"]  # fmt: skip
VERSIONS = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", "1999-01-01", "", "x" * 300]

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=50),
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def server_pid(server) -> int:
    """The serving Python process (coverage may wrap the command in a parent)."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    kids = children.read_text().split() if children.exists() else []
    return (
        int(kids[0])
        if kids and "mcp_api" in Path(f"/proc/{kids[0]}/cmdline").read_text()
        else server.process.pid
    )


@pytest.fixture
def fuzz_server(server_factory):
    return server_factory(FUZZ_ENV)


def test_random_and_mutated_jsonrpc_never_yields_5xx(fuzz_server):
    server = fuzz_server
    client = httpx.Client(base_url=server.base_url, timeout=30)
    auth = {"authorization": f"Bearer {server.api_key}"}
    statuses: dict[int, int] = {}

    def send(content: bytes, headers: dict[str, str]) -> None:
        response = client.post("/mcp", content=content, headers=auth | headers)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (response.status_code, content[:300], headers, response.text[:500])
        assert server.process.poll() is None, server.log_text()[-3000:]

    base_headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                    "mcp-protocol-version": "2025-11-25"}  # fmt: skip
    for _ in range(30):  # warm-up before the memory baseline
        send(b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}', base_headers)
    pid = server_pid(server)
    baseline = rss_kib(pid)

    @FAST
    @given(
        method=st.one_of(st.sampled_from(METHODS), st.text(max_size=40)),
        request_id=st.one_of(
            st.integers(min_value=-(10**30), max_value=10**30),
            st.text(max_size=20),
            st.none(),
            st.floats(allow_nan=False),
            st.lists(st.integers(), max_size=2),
        ),  # fmt: skip
        params=st.one_of(
            json_values, st.fixed_dictionaries({"name": st.text(max_size=20), "arguments": json_values})
        ),
        jsonrpc=st.sampled_from(["2.0", "2.0", "1.0", 2, None]),
        version=st.sampled_from(VERSIONS),
        header_method=st.one_of(st.none(), st.sampled_from(METHODS)),
    )
    def structured(method, request_id, params, jsonrpc, version, header_method):
        message = {"jsonrpc": jsonrpc, "id": request_id, "method": method, "params": params}
        headers = base_headers | {"mcp-protocol-version": version}
        if header_method is not None:  # modern-style headers that may contradict the body
            headers["mcp-method"] = header_method
            name = str(params.get("name", ""))[:50] if isinstance(params, dict) else "x"
            # Any bytes a client can put in a header (UTF-8 included), minus the line breaks HTTP forbids.
            cleaned = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in name).strip()
            headers["mcp-name"] = (cleaned or "x").encode()
        send(json.dumps(message).encode(), headers)

    structured()

    valid = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                        "params": {"name": "read_file", "arguments": {"path": "a.txt"}}}).encode()  # fmt: skip

    @FAST
    @given(
        edits=st.lists(
            st.tuples(st.integers(0, len(valid)), st.integers(0, 8), st.binary(max_size=8)), max_size=6
        ),
        cut=st.integers(0, len(valid)),
        content_type=st.sampled_from(
            ["application/json", "application/json; charset=utf-8", "text/plain", ""]
        ),
        accept=st.sampled_from(
            ["application/json", "text/event-stream", "application/json, text/event-stream", "*/*", ""]
        ),
    )
    def mutated(edits, cut, content_type, accept):
        body = bytearray(valid[: max(cut, 1)] if cut % 3 == 0 else valid)
        for position, length, insert in edits:
            body[position : position + length] = insert  # may produce invalid UTF-8 and broken JSON
        send(bytes(body), base_headers | {"content-type": content_type, "accept": accept})

    mutated()

    # Hostile shapes, deterministically.
    hostile = [
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"ping"}',
        b'{"jsonrpc":"2.0","id":1e999999,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":"\xff\xfe\xed"}}',
        b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"\\u0000"}}}',
        b"\x00" * 1000,
        b"",
        b"{" * 200_000,
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"A" * (9 * 1024 * 1024) + b'"}}',
    ]
    for body in hostile:
        send(body, base_headers)
    for _ in range(3):  # oversized bodies again: memory must come back
        send(hostile[-1], base_headers)
    grown_mib = (rss_kib(pid) - baseline) / 1024
    assert grown_mib < 96, f"server RSS grew by {grown_mib:.0f} MiB over the fuzz run ({statuses})"
    assert client.get("/health").status_code == 200
    client.close()


SENTINEL = "OUTSIDE-THE-WORKSPACE-SENTINEL"
segments = st.sampled_from(
    ["..", ".", "", "...", "link", "dirlink", "outside", "sentinel.txt", "a", "\x00", "~", "%2e%2e", "\\", "..\\..",
     "é", "日本", "\u202e", "a" * 300, "/", "//", "proc", "self", "root", "etc", "passwd", " ", "\n"]
)  # fmt: skip
paths = st.one_of(
    st.lists(segments, min_size=1, max_size=8).map("/".join),
    st.text(min_size=1, max_size=64),
    st.lists(segments, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
)


def snapshot(root: Path, skip: Path) -> dict[str, bytes | None]:
    state = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        if here == skip or skip in here.parents:
            dirnames[:] = []
            continue
        for name in filenames + dirnames:
            path = here / name
            if path == skip:
                continue
            state[str(path.relative_to(root))] = (
                path.read_bytes() if path.is_file() and not path.is_symlink() else None
            )
    return state


def test_random_paths_never_escape_the_workspace(fuzz_server):
    server = fuzz_server
    workspace = server.workspace_dir
    workspace.mkdir(parents=True, exist_ok=True)
    root = server.data_dir.parent
    outside = root / "outside"
    outside.mkdir()
    (outside / "sentinel.txt").write_text(SENTINEL)
    (server.data_dir / "sentinel.txt").write_text(SENTINEL)

    def reset_links():
        for name, target in (("link", outside / "sentinel.txt"), ("dirlink", outside), ("etc", Path("/etc"))):
            path = workspace / name
            if not path.is_symlink():
                if path.exists():
                    continue
                path.symlink_to(target)

    reset_links()
    (workspace / "a").mkdir(exist_ok=True)
    before = snapshot(root, skip=workspace)
    client = httpx.Client(base_url=server.base_url, timeout=30)
    headers = {"authorization": f"Bearer {server.api_key}", "content-type": "application/json",
               "accept": "application/json", "mcp-protocol-version": "2025-11-25"}  # fmt: skip

    def call(tool: str, arguments: dict) -> str:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        }
        response = client.post("/mcp", json=body, headers=headers)
        assert response.status_code < 500, (tool, arguments, response.text[:500])
        return response.text

    @FAST
    @given(path=paths, other=paths, op=st.sampled_from(["read", "write", "list", "info", "move", "mkdir", "tree",
                                                          "find", "grep", "edit", "delete"]))  # fmt: skip
    def escape(path, other, op):
        reset_links()
        text = {
            "read": lambda: call("read_file", {"path": path}),
            "write": lambda: call("write_file", {"path": path, "content": "FUZZ-MARK"}),
            "list": lambda: call("list_directory", {"path": path}),
            "info": lambda: call("file_info", {"path": path}),
            "move": lambda: call("move_file", {"source": path, "destination": other, "overwrite": True}),
            "mkdir": lambda: call("create_directory", {"path": path}),
            "tree": lambda: call("directory_tree", {"path": path, "max_depth": 3}),
            "find": lambda: call("find_files", {"path": path, "pattern": "*"}),
            "grep": lambda: call("grep", {"path": path, "pattern": "SENTINEL"}),
            "edit": lambda: call(
                "edit_file", {"path": path, "edits": [{"old_text": "O", "new_text": "FUZZ-MARK"}]}
            ),
            "delete": lambda: call("delete_file", {"path": path, "recursive": True}),
        }[op]()
        assert SENTINEL not in text, (op, path, other)

    escape()
    after = snapshot(root, skip=workspace)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    # Only the server's own bookkeeping (store, sockets, logs) may change outside the workspace.
    changed = {k for k in changed if not k.startswith(("data/secure-agent.db", "data/run", "server.log"))
               and "/run/" not in k and not k.endswith((".db-wal", ".db-shm", ".sock"))}  # fmt: skip
    assert not changed, sorted(changed)[:20]
    assert (outside / "sentinel.txt").read_text() == SENTINEL
    assert server.process.poll() is None
    client.close()
