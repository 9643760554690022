"""Helpers for the tests that run what the docs say: servers started like `make run`, a `uv` shim,
and the code blocks of a Markdown file."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
NODE_BIN = REPO / ".tools" / "node22" / "bin"
NODE_MODULES_BIN = REPO / "tools" / "node" / "node_modules" / ".bin"
FIXED_KEY = "sa_docsdrill001_" + "Zq3-kV8_wN1pR5tY7xB2mC4dF6hJ9sL0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hermetic_env(**extra: str) -> dict[str, str]:
    """The caller's env without SECURE_AGENT_* (a developer's shell must not leak into a test)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_AGENT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def uv_shim(directory: Path) -> Path:
    """A `uv` on PATH that runs `uv run [--opts] X args` as this venv's X: the docs' commands run
    literally, without re-syncing the shared environment from a temp dir that has no pyproject."""
    bin_dir = directory / "shim-bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "uv"
    shim.write_text(
        "#!/bin/bash\n"
        '[ "$1" = run ] || { echo "uv shim: only uv run is supported" >&2; exit 2; }\n'
        "shift\n"
        'while [[ "$1" == -* ]]; do shift; done\n'
        f'exec "{VENV_BIN}/$1" "${{@:2}}"\n'
    )
    shim.chmod(0o755)
    return bin_dir


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    output: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.output)

    @property
    def base_url(self) -> str:
        return f"http://localhost:{self.port}"

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text, re.M | re.S)
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"server did not print {pattern!r}; output:\n{self.text[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_server(cwd: Path, env: dict[str, str], port: int | None = None) -> Server:
    """`secure-agent serve` (what `make run` runs) in `cwd`, waiting for /health."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_api", "serve", "--port", str(port)],
        cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    server = Server(proc, port)

    def pump() -> None:
        for line in proc.stdout:
            server.output.append(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.text[-4000:]}")
        try:
            if httpx.get(f"{server.base_url}/health", timeout=2).status_code == 200:
                server.wait_for(r"secure-agent is serving MCP at", 30)
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"/health did not answer within 60 s:\n{server.text[-4000:]}")


def marked_blocks(path: Path) -> dict[str, str]:
    """Code blocks preceded by `<!-- drill: NAME -->` (or `<!-- run: NAME -->`), by name."""
    text = path.read_text()
    found = {}
    for m in re.finditer(r"<!-- (?:drill|run): ([\w-]+) -->\s*\n```[\w-]*\n(.*?)\n```", text, re.S):
        found[m.group(1)] = m.group(2)
    return found


def fenced(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)\n```", path.read_text(), re.S)


def run_bash(
    script: str, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def mcp_headers(key: str, method: str, name: str | None = None) -> dict[str, str]:
    headers = {
        "authorization": f"Bearer {key}", "content-type": "application/json",
        "accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28", "mcp-method": method,
    }  # fmt: skip
    if name:
        headers["mcp-name"] = name
    return headers


def mcp_call(base_url: str, key: str, tool: str, timeout: float = 120, **arguments) -> dict:
    """A tools/call in the 2026-07-28 revision; returns the result."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": tool, "arguments": arguments, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "docs-tests", "version": "1"}}}}  # fmt: skip
    r = httpx.post(
        f"{base_url}/mcp", json=body, headers=mcp_headers(key, "tools/call", tool), timeout=timeout
    )
    assert r.status_code == 200, (r.status_code, r.text)
    if r.headers["content-type"].startswith("text/event-stream"):
        import json

        msgs = [
            json.loads(line[5:])
            for line in r.text.splitlines()
            if line.startswith("data:") and line[5:].strip()
        ]
        return [m for m in msgs if m.get("id") == 1][-1]["result"]
    return r.json()["result"]
