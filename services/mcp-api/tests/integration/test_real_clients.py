"""Real MCP clients against the real server: the MCP Inspector CLI and mcp-remote (stdio bridge).

Both are pinned in tools/node/package.json and run with the Node 22 from
``scripts/install-node-tools.sh``. Their state (Inspector catalog/storage, mcp-remote's
``~/.mcp-auth``) is kept in the test's tmp dir.
"""

import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.node]

REPO = Path(__file__).resolve().parents[4]
NODE_BIN = REPO / ".tools" / "node22" / "bin"
NODE_MODULES_BIN = REPO / "tools" / "node" / "node_modules" / ".bin"
INSPECTOR = NODE_MODULES_BIN / "mcp-inspector"
MCP_REMOTE = NODE_MODULES_BIN / "mcp-remote"

CLIENT_TIMEOUT_S = 60
FILE_CONTENT = "hello from the secure-agent workspace: 7f3c1e\n"
INSPECTOR_EXIT_AUTH_REQUIRED = 3  # EXIT_CODES.AUTH_REQUIRED (a 401/403 from the server)


def _node_env(home: Path) -> dict[str, str]:
    if not (NODE_BIN / "node").exists():
        pytest.skip(
            f"{NODE_BIN / 'node'} is missing: run `bash scripts/install-node-tools.sh` (make node-tools)"
        )
    for tool in (INSPECTOR, MCP_REMOTE):
        assert tool.exists(), f"{tool} is missing: run `bash scripts/install-node-tools.sh`"
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "MCP_CATALOG_PATH": str(home / "inspector-catalog.json"),
        "MCP_REMOTE_CONFIG_DIR": str(home / "mcp-auth"),
        "NO_COLOR": "1",
    }


def _inspector(env: dict[str, str], url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSPECTOR), "--cli", url, "--transport", "http", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
    )


def _write_hello(workspace: Path) -> None:
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "hello.txt").write_text(FILE_CONTENT)


def _text_of(result: dict[str, Any]) -> str:
    parts = [c.get("text", "") for c in result.get("content", []) if c.get("type") == "text"]
    return "\n".join(parts) + json.dumps(result.get("structuredContent") or {})


def test_inspector_cli_lists_tools_and_reads_file(live_server, tmp_path: Path) -> None:
    env = _node_env(tmp_path / "home")
    server = live_server({})
    _write_hello(server.workspace_dir)
    auth = f"Authorization: Bearer {server.api_key}"

    listed = _inspector(env, server.url, "--header", auth, "--method", "tools/list")
    assert listed.returncode == 0, f"rc={listed.returncode}\n{listed.stdout}\n{listed.stderr}"
    names = {tool["name"] for tool in json.loads(listed.stdout)["tools"]}
    assert "read_file" in names, names

    called = _inspector(
        env,
        server.url,
        "--header",
        auth,
        "--method",
        "tools/call",
        "--tool-name",
        "read_file",
        "--tool-arg",
        "path=hello.txt",
    )
    assert called.returncode == 0, f"rc={called.returncode}\n{called.stdout}\n{called.stderr}"
    result = json.loads(called.stdout)
    assert result.get("isError") is not True, result
    assert FILE_CONTENT.strip() in _text_of(result), result


def test_inspector_cli_without_authorization_gets_401(live_server, tmp_path: Path) -> None:
    env = _node_env(tmp_path / "home")
    server = live_server({})

    # What the Inspector saw: --stored-auth-only keeps it from starting an interactive OAuth flow.
    denied = _inspector(env, server.url, "--stored-auth-only", "--method", "tools/list")
    assert denied.returncode == INSPECTOR_EXIT_AUTH_REQUIRED, (
        f"rc={denied.returncode}\n{denied.stdout}\n{denied.stderr}"
    )
    envelope = json.loads(denied.stderr.strip().splitlines()[-1])["error"]
    assert envelope["code"] == "auth_required", envelope
    assert envelope.get("status", 401) == 401, envelope
    assert "tools" not in denied.stdout

    # The same request on the wire: a 401 with a Bearer challenge.
    probe = httpx.post(
        server.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"},
        timeout=10,
    )
    assert probe.status_code == 401, (probe.status_code, probe.text)
    assert probe.headers.get("www-authenticate", "").lower().startswith("bearer"), probe.headers


class _StdioJsonRpc:
    """Newline-delimited JSON-RPC over a child's stdin/stdout, with timeouts."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line:
                try:
                    self.inbox.put(json.loads(line))
                except json.JSONDecodeError:
                    self.inbox.put({"_non_json": line.decode(errors="replace")})
        self.inbox.put(None)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def request(self, id_: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.send({"jsonrpc": "2.0", "id": id_, "method": method, **({"params": params} if params else {})})
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.inbox.get(timeout=left)
            except queue.Empty:
                break
            if message is None:
                raise AssertionError(
                    f"mcp-remote closed stdout while waiting for {method}; seen: {self.seen}"
                )
            self.seen.append(message)
            if message.get("id") == id_ and "method" not in message:
                assert "error" not in message, message
                return message["result"]
        raise AssertionError(f"no answer to {method} within {CLIENT_TIMEOUT_S}s; seen: {self.seen}")


def test_mcp_remote_stdio_bridge(live_server, tmp_path: Path) -> None:
    env = _node_env(tmp_path / "home")
    server = live_server({})
    _write_hello(server.workspace_dir)
    env["AUTH_HEADER"] = f"Bearer {server.api_key}"
    stderr_path = tmp_path / "mcp-remote.stderr"

    with open(stderr_path, "wb") as stderr:
        # As in a Claude Desktop config: the header value comes from the env, no space after ':'.
        proc = subprocess.Popen(
            [
                str(MCP_REMOTE),
                server.url,
                "--header",
                "Authorization:${AUTH_HEADER}",
                "--transport",
                "http-only",
            ],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        rpc = _StdioJsonRpc(proc)
        init = rpc.request(
            1,
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "pytest", "version": "0"},
            },
        )
        assert init["protocolVersion"], init
        assert "tools" in init["capabilities"], init
        rpc.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

        tools = rpc.request(2, "tools/list")
        assert "read_file" in {t["name"] for t in tools["tools"]}, tools

        result = rpc.request(3, "tools/call", {"name": "read_file", "arguments": {"path": "hello.txt"}})
        assert result.get("isError") is not True, result
        assert FILE_CONTENT.strip() in _text_of(result), result
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n--- mcp-remote stderr ---\n{stderr_path.read_text(errors='replace')}"
        ) from None
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
