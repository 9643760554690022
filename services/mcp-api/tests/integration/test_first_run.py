"""A new user's first run: `secure-agent serve` on an empty data dir prints a key and configs that work
when pasted as they are."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Output:
    """Collects a process's output on a thread, so waiting for a line can time out instead of blocking."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self._thread.start()

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.text += line

    def wait_for(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text, re.S):
                return self.text
            time.sleep(0.05)
        raise AssertionError(f"server did not print {pattern!r} in {timeout}s; output:\n{self.text}")


def test_printed_configs_work_without_editing(tmp_path: Path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_AGENT_")}
    env |= {
        "SECURE_AGENT_PORT": str(port),
        "SECURE_AGENT_DATA_DIR": str(tmp_path / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_api", "serve"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        out = _Output(proc).wait_for(r"Application startup complete", 60)
        key = re.search(r"^\s+(sa_\S+)$", out, re.M).group(1)
        cursor_json = re.search(r"--- Cursor \(~/.cursor/mcp.json\) ---\n(\{.*?\n\})", out, re.S).group(1)
        server = json.loads(cursor_json)["mcpServers"]["secure-agent"]
        assert server["url"] == f"http://localhost:{port}/mcp"
        claude_code = re.search(r"^claude mcp add .*$", out, re.M).group(0)
        argv = shlex.split(claude_code)
        assert argv[argv.index("--header") + 1] == f"Authorization: Bearer {key}"
        assert argv[:5] == ["claude", "mcp", "add", "--transport", "http"] and argv[6] == server["url"]

        headers = {**server["headers"], "accept": "application/json, text/event-stream",
                   "mcp-protocol-version": "2025-11-25"}  # fmt: skip
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "u", "version": "1"}}}  # fmt: skip
        with httpx.Client(timeout=30) as http:
            assert http.post(server["url"], json=init, headers=headers).status_code == 200
            listed = http.post(server["url"], json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                               headers={**headers, "accept": "application/json"})  # fmt: skip
            assert listed.status_code == 200, listed.text
            assert "read_file" in {t["name"] for t in listed.json()["result"]["tools"]}
        # The key is shown once: a restart prints no secret.
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        again = subprocess.Popen(
            [sys.executable, "-m", "mcp_api", "serve"], env=env, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            out2 = _Output(again).wait_for(r"Application startup complete", 60)
            assert key not in out2 and "exists" in out2
        finally:
            again.send_signal(signal.SIGTERM)
            again.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


CLAUDE = Path(__file__).resolve().parents[4] / "tools" / "node" / "node_modules" / ".bin" / "claude"
NODE_BIN = Path(__file__).resolve().parents[4] / ".tools" / "node22" / "bin"


@pytest.mark.node
def test_printed_claude_code_command_connects(tmp_path: Path):
    """Paste the printed `claude mcp add ...` line into a shell; `claude mcp list` then performs a real
    MCP connection (no Anthropic API key needed) and must report the server as connected."""
    assert CLAUDE.exists(), f"{CLAUDE} missing: run `bash scripts/install-node-tools.sh`"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_AGENT_")}
    env |= {"SECURE_AGENT_PORT": str(port), "SECURE_AGENT_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_api", "serve"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        out = _Output(proc).wait_for(r"Application startup complete", 60)
        pasted = re.search(r"^claude mcp add .*$", out, re.M).group(0)
        home = tmp_path / "home"
        project = tmp_path / "project"
        home.mkdir()
        project.mkdir()
        client_env = {
            "HOME": str(home),
            "PATH": f"{CLAUDE.parent}{os.pathsep}{NODE_BIN}{os.pathsep}/usr/bin:/bin",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        added = subprocess.run(
            ["/bin/sh", "-c", pasted], env=client_env, cwd=project, capture_output=True, text=True, timeout=60
        )
        assert added.returncode == 0, added.stderr + added.stdout
        listed = subprocess.run(
            ["claude", "mcp", "list"], env=client_env, cwd=project, capture_output=True, text=True, timeout=90
        )
        assert re.search(rf"secure-agent: http://localhost:{port}/mcp \(HTTP\) - ✔ Connected", listed.stdout), (
            listed.stdout + listed.stderr
        )
        # The key never lands in Claude Code's printed output.
        key = re.search(r"^\s+(sa_\S+)$", out, re.M).group(1)
        assert key not in added.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
