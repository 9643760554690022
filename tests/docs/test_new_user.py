"""A new user follows README.md and docs/clients/*.md literally: start the server the way the README says,
take the printed key and command, and reach a working tool call with Claude Code and the Inspector CLI.

The commands come out of the docs themselves (only `<key>` and the port are substituted), so a guide
that drifts from what the server prints or accepts fails here."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import docs_helpers as h  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.node]
README = h.REPO / "README.md"
CLAUDE_CODE = h.REPO / "docs" / "clients" / "claude-code.md"
OTHER = h.REPO / "docs" / "clients" / "other-clients.md"


def _serve_command() -> str:
    """The README's `secure-agent serve` line, the one that says it is what `make run` does."""
    line = next(ln for ln in README.read_text().splitlines() if "what `make run` does" in ln)
    return line.split("#")[0].strip()


def _localize(text: str, port: int, key: str) -> str:
    return text.replace("localhost:8080", f"localhost:{port}").replace("<key>", key)


@pytest.fixture
def node_env(tmp_path: Path) -> dict[str, str]:
    if not (h.NODE_BIN / "node").exists() or not (h.NODE_MODULES_BIN / "claude").exists():
        pytest.skip("Node 22 tools missing: run `bash scripts/install-node-tools.sh` (make node-tools)")
    home = tmp_path / "home"
    home.mkdir()
    return {
        "HOME": str(home),
        "PATH": f"{h.NODE_MODULES_BIN}{os.pathsep}{h.NODE_BIN}{os.pathsep}/usr/bin:/bin",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "MCP_CATALOG_PATH": str(home / "inspector-catalog.json"),
        "NO_COLOR": "1",
    }


def test_readme_and_claude_code_guide_lead_to_a_working_tool_call(
    tmp_path: Path, node_env: dict[str, str]
) -> None:
    assert _serve_command() == "uv run secure-agent serve"
    port = h.free_port()
    env = h.hermetic_env(SECURE_AGENT_PORT=str(port))
    env["PATH"] = f"{h.uv_shim(tmp_path)}:{env['PATH']}"
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {_serve_command()}"], cwd=checkout, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    server = h.Server(proc, port)
    threading.Thread(target=lambda: server.output.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        server.wait_for(r"Application startup complete", 90)
        out = server.text
        key = re.search(r"^\s+(sa_\S+)$", out, re.M).group(1)

        # The guide's command, with the printed key, is exactly the printed line.
        printed = re.search(r"^claude mcp add .*$", out, re.M).group(0)
        guide_cmd = next(
            ln
            for block in h.fenced(CLAUDE_CODE, "sh")
            for ln in block.splitlines()
            if ln.startswith("claude mcp add")
        )
        assert shlex.split(_localize(guide_cmd, port, key)) == shlex.split(printed)

        # README's Cursor snippet is the printed Cursor config.
        readme_cursor = next(b for b in h.fenced(README, "json") if '"url"' in b and "headers" in b)
        printed_cursor = re.search(r"--- Cursor \(~/.cursor/mcp.json\) ---\n(\{.*?\n\})", out, re.S).group(1)
        assert json.loads(_localize(readme_cursor, port, key)) == json.loads(printed_cursor)

        # Paste it; `claude mcp list` connects for real (what the guide says to check).
        project = tmp_path / "project"
        project.mkdir()
        added = subprocess.run(
            ["/bin/sh", "-c", printed], env=node_env, cwd=project, capture_output=True, text=True, timeout=90
        )
        assert added.returncode == 0, added.stdout + added.stderr
        listed = subprocess.run(
            ["claude", "mcp", "list"], env=node_env, cwd=project, capture_output=True, text=True, timeout=120
        )
        expected = next(
            ln for b in h.fenced(CLAUDE_CODE, "text") for ln in b.splitlines() if "Connected" in ln
        )
        assert _localize(expected, port, key) in listed.stdout, listed.stdout + listed.stderr

        # A tool call with the Inspector CLI commands of other-clients.md (KEY=<key> block).
        (checkout / ".data/workspaces/dev/default").mkdir(parents=True, exist_ok=True)
        (checkout / ".data/workspaces/dev/default/hello.txt").write_text("hello from the docs test\n")
        inspector_block = next(b for b in h.fenced(OTHER, "sh") if b.startswith("KEY=<key>"))
        # `npx -y pkg@version` runs the pinned copy in tools/node (no registry access in tests).
        script = _localize(inspector_block, port, key).replace(
            "npx -y @modelcontextprotocol/inspector@2.12.0", str(h.NODE_MODULES_BIN / "mcp-inspector")
        )
        ran = h.run_bash(script, tmp_path, {**node_env, "PATH": node_env["PATH"]}, timeout=180)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        docs = [json.loads(d) for d in re.findall(r"^\{.*?^\}", ran.stdout, re.M | re.S)]
        assert "read_file" in {t["name"] for t in docs[0]["tools"]}, docs[0]
        assert docs[1]["isError"] is False and "hello.txt" in json.dumps(docs[1]), docs[1]
    finally:
        server.stop()
