"""Test helpers shared by mcp-api tests: a JSON-RPC caller that speaks both protocol eras."""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx

TEST_KEY = "sa_testkey0000A_" + "k" * 43
MODERN = "2026-07-28"
LEGACY = "2025-11-25"


@dataclass
class Mcp:
    """Speaks JSON-RPC to /mcp the way real clients do, in either protocol era."""

    http: httpx.AsyncClient
    key: str | None = TEST_KEY
    era: str = "legacy"
    accept: str = "application/json, text/event-stream"
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def headers(self, method: str, name: str | None = None) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": self.accept}
        if self.key:
            headers["authorization"] = f"Bearer {self.key}"
        if self.era == "modern":
            headers |= {"mcp-protocol-version": MODERN, "mcp-method": method}
            if name is not None:
                headers["mcp-name"] = name
        else:
            headers["mcp-protocol-version"] = LEGACY
        return headers

    def body(self, method: str, params: dict | None = None) -> dict:
        params = dict(params or {})
        if self.era == "modern":
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "pytest", "version": "1"},
            }
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}

    async def post(self, method: str, params: dict | None = None, name: str | None = None) -> httpx.Response:
        return await self.http.post(
            "/mcp", json=self.body(method, params), headers=self.headers(method, name)
        )

    async def request(self, method: str, params: dict | None = None, name: str | None = None) -> dict:
        """The JSON-RPC response message (result or error), from a JSON or an SSE response."""
        response = await self.post(method, params, name)
        assert response.status_code == 200, (response.status_code, response.text)
        return parse_rpc(response)

    async def call(self, tool: str, **arguments) -> dict:
        message = await self.request("tools/call", {"name": tool, "arguments": arguments}, name=tool)
        assert "result" in message, message
        return message["result"]


def parse_rpc(response: httpx.Response) -> dict:
    if response.headers["content-type"].startswith("text/event-stream"):
        messages = [
            json.loads(line[5:].strip())
            for line in response.text.splitlines()
            if line.startswith("data:") and line[5:].strip()
        ]
        finals = [m for m in messages if "id" in m and ("result" in m or "error" in m)]
        assert finals, response.text
        return finals[-1]
    return response.json()


def survivors(marker: str) -> list[int]:
    """Host PIDs (any PID namespace) whose command line contains `marker`, zombies excepted."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            state = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != b"Z":
            found.append(int(name))
    return found
