"""templates/NOTES.txt: the MCP URL and client configs (Claude Code, Cursor, mcp-remote)."""

from __future__ import annotations

import json
import re

from chart_helpers import case_files, render_notes


def test_ingress_url_and_client_configs(tmp_path) -> None:
    notes = render_notes(case_files("production"), tmp=tmp_path)
    url = "https://mcp.example.com/mcp"
    assert f"MCP endpoint: {url}" in notes
    assert (
        f'claude mcp add --transport http secure-agent {url} --header "Authorization: Bearer $SECURE_AGENT_API_KEY"'
        in notes
    )
    assert (
        "kubectl -n secure-agent get secret secure-agent-prod -o jsonpath='{.data.api-key}' | base64 -d"
        in notes
    )
    blocks = re.findall(r"^  \{\n.*?^  \}$", notes, flags=re.S | re.M)
    cursor, remote = (json.loads(b) for b in blocks)
    assert cursor["mcpServers"]["secure-agent"]["url"] == url
    assert cursor["mcpServers"]["secure-agent"]["headers"]["Authorization"].startswith("Bearer ")
    assert remote["mcpServers"]["secure-agent"]["args"][:3] == ["-y", "mcp-remote", url]
    assert (
        "seccomp Localhost (profiles/agent-runner.json, installed by the seccomp-installer DaemonSet)"
        in notes
    )


def test_gateway_url(tmp_path) -> None:
    assert "MCP endpoint: https://mcp.example.com/mcp" in render_notes(
        case_files("gateway-api"), tmp=tmp_path
    )


def test_port_forward_without_ingress(tmp_path) -> None:
    notes = render_notes(tmp=tmp_path)
    assert "kubectl -n secure-agent port-forward svc/sa-secure-agent-mcp-api 8080:8080" in notes
    assert "claude mcp add --transport http secure-agent http://localhost:8080/mcp" in notes
