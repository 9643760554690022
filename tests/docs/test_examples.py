"""examples/clients/ is generated from mcp_config.json and in sync; every config parses and points at the
endpoint the manifest names, which is a route of the app, with the key as a Bearer header."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))
import docs_check_lib as lib  # noqa: E402

CLIENTS = lib.REPO / "examples" / "clients"
GENERATE = CLIENTS / "generate.py"


def _generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GENERATE), *args], capture_output=True, text=True, timeout=120)


def test_committed_client_configs_are_in_sync() -> None:
    result = _generate("--check")
    assert result.returncode == 0, result.stderr


def test_check_detects_drift(tmp_path: Path) -> None:
    assert _generate("--out", str(tmp_path)).returncode == 0
    (tmp_path / "cursor-mcp.json").write_text('{"mcpServers": {}}\n')
    result = _generate("--check", "--out", str(tmp_path))
    assert result.returncode == 1 and "cursor-mcp.json" in result.stderr


def _expected_url() -> str:
    manifest = json.loads((lib.REPO / "mcp_config.json").read_text())
    default = urlsplit(manifest["endpoint"]["default"])
    return f"http://localhost:{default.port}{default.path}"


def test_configs_parse_and_point_at_the_mcp_endpoint() -> None:
    url = _expected_url()
    assert lib.route_exists(urlsplit(url).path)
    desktop = json.loads((CLIENTS / "claude_desktop_config.json").read_text())["mcpServers"]["secure-agent"]
    args = desktop["args"]
    assert desktop["command"] == "npx" and url in args
    assert args[args.index("--header") + 1] == "Authorization:${AUTH_HEADER}"
    assert desktop["env"]["AUTH_HEADER"] == "Bearer <key>"
    assert not lib.check_npx(args), lib.check_npx(args)  # mcp-remote is the pinned version

    cursor = json.loads((CLIENTS / "cursor-mcp.json").read_text())["mcpServers"]["secure-agent"]
    assert cursor == {"url": url, "headers": {"Authorization": "Bearer <key>"}}

    vscode = json.loads((CLIENTS / "vscode-mcp.json").read_text())
    server = vscode["servers"]["secure-agent"]
    assert server["type"] == "http" and server["url"] == url
    input_id = vscode["inputs"][0]["id"]
    assert server["headers"]["Authorization"] == f"Bearer ${{input:{input_id}}}"

    project = json.loads((CLIENTS / "claude-code.mcp.json").read_text())["mcpServers"]["secure-agent"]
    assert project["type"] == "http" and project["url"] == url

    lines = [ln for ln in (CLIENTS / "claude-code.sh").read_text().splitlines() if ln.startswith("claude ")]
    argv = shlex.split(lines[0])
    assert argv[:6] == ["claude", "mcp", "add", "--transport", "http", "secure-agent"] and argv[6] == url
    assert argv[argv.index("--header") + 1] == "Authorization: Bearer <key>"
    assert lines[1] == "claude mcp list"


def test_the_guides_show_the_generated_configs() -> None:
    """The big JSON snippet of each client guide is the generated file (the key placeholder aside)."""
    pairs = {"claude-desktop.md": "claude_desktop_config.json", "cursor.md": "cursor-mcp.json",
             "vscode.md": "vscode-mcp.json"}  # fmt: skip
    for guide, example in pairs.items():
        text = (lib.REPO / "docs" / "clients" / guide).read_text()
        blocks = [json.loads(b) for b in text.split("```json\n")[1:] for b in [b.split("\n```")[0]]]
        assert json.loads((CLIENTS / example).read_text()) in blocks, f"{guide} does not show {example}"
