"""mcp_config.json is generated from the server; the committed file must match."""

from __future__ import annotations

import json
from pathlib import Path

from mcp_api.mcp.manifest import build_manifest, render_manifest

ROOT = Path(__file__).resolve().parents[3]


def test_committed_manifest_matches_generated():
    committed = (ROOT / "mcp_config.json").read_text()
    assert committed == render_manifest(), "mcp_config.json is stale: run 'make manifest' and commit it"


def test_manifest_describes_every_tool_with_scope():
    manifest = build_manifest()
    tools = {t["name"]: t for t in manifest["tools"]}
    assert tools["read_file"]["scope"] == "files:read"
    assert tools["write_file"]["scope"] == "files:write"
    assert all(t["description"] for t in tools.values())
    assert manifest["protocol_revisions"]["modern"] == ["2026-07-28"]
    assert manifest["endpoint"]["default"] == "http://127.0.0.1:8080/mcp"
    json.dumps(manifest)
