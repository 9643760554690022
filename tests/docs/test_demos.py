"""docs/demos/*.cast are valid asciinema v2 recordings, short, show what docs/demos/README.md says, and
come from docs/demos/record.py (the client demo is re-recorded and compared, ports and timing aside)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import docs_helpers as h  # noqa: E402

DEMOS = h.REPO / "docs" / "demos"
EXPECTED = {
    "serve.cast": ["uv run --frozen secure-agent serve", "secure-agent is serving MCP at", "It is shown ONCE",
                   "--- Cursor (~/.cursor/mcp.json) ---", "claude mcp add --transport http", "Application shutdown complete"],
    "client.cast": ["--method tools/list", "read_file: Read file", "agent_run: Run the SecureAgent",
                    "Hello from a sandboxed workspace!"],
    "agent-approval.cast": ["status: awaiting_approval", "approval needed for delete_file", "status: completed",
                            "app-2026-11.log"],
}  # fmt: skip


def load(path: Path) -> tuple[dict, list[list]]:
    lines = path.read_text().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def plain(events: list[list]) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", "".join(e[2] for e in events)).replace("\r", "")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cast_is_valid_short_and_shows_the_demo(name: str) -> None:
    header, events = load(DEMOS / name)
    assert header["version"] == 2 and header["width"] > 0 and header["height"] > 0
    times = [e[0] for e in events]
    assert all(isinstance(t, float | int) for t in times) and times == sorted(times)
    assert all(e[1] == "o" and isinstance(e[2], str) for e in events)
    assert times[-1] < 30, "keep recordings short"
    text = plain(events)
    for fragment in EXPECTED[name]:
        assert fragment in text, f"{name} does not show {fragment!r}"
    assert name in (DEMOS / "README.md").read_text()


def _normalized(text: str) -> str:
    text = re.sub(r"localhost:\d+", "localhost:<port>", text)
    return re.sub(r"conv_\w+|token=[\w-]+", "<id>", text)


@pytest.mark.integration
@pytest.mark.node
def test_client_demo_is_reproduced_by_the_script(tmp_path: Path) -> None:
    if not (h.NODE_MODULES_BIN / "mcp-inspector").exists():
        pytest.skip("Node tools missing: make node-tools")
    result = subprocess.run([sys.executable, str(DEMOS / "record.py"), "--only", "client", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    fresh = _normalized(plain(load(tmp_path / "client.cast")[1]))
    committed = _normalized(plain(load(DEMOS / "client.cast")[1]))
    assert fresh == committed
