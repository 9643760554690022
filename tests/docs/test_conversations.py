"""The committed transcripts in examples/conversations/ are what record.py produces: one scenario is
re-recorded against a fresh server into a temp dir and compared with the committed file, ids, tokens,
timestamps and durations aside. The others are checked for shape and outcome."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import docs_helpers as h  # noqa: E402

pytestmark = pytest.mark.integration
CONVERSATIONS = h.REPO / "examples" / "conversations"
SCENARIOS = ["fix-failing-test", "refactor-with-approval", "investigate-log"]


def normalize(value: Any) -> Any:
    text = json.dumps(value, sort_keys=True)
    text = re.sub(r"conv_[0-9a-f]{8,}", "conv_<id>", text)
    text = re.sub(r"(token[\"'=:\\ ]+)[A-Za-z0-9_-]{20,}", r"\1<token>", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?", "<time>", text)
    text = re.sub(r"\b\d+\.\d+s\b", "<seconds>", text)
    text = re.sub(r"Ran (\d+) tests? in [0-9.]+s", r"Ran \1 tests in <seconds>", text)
    return json.loads(text)


def test_rerecorded_transcript_matches_the_committed_one(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(CONVERSATIONS / "record.py"), "--only", "investigate-log", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    fresh = json.loads((tmp_path / "investigate-log.json").read_text())
    committed = json.loads((CONVERSATIONS / "investigate-log.json").read_text())
    assert normalize(fresh) == normalize(committed)
    assert (tmp_path / "investigate-log.md").read_text().count("###") == (
        (CONVERSATIONS / "investigate-log.md").read_text().count("###")
    )


@pytest.mark.parametrize("name", SCENARIOS)
def test_committed_transcript_shape(name: str) -> None:
    rec = json.loads((CONVERSATIONS / f"{name}.json").read_text())
    assert rec["scenario"] == name and (CONVERSATIONS / f"{name}.md").exists()
    tools = [e["tool"] for e in rec["exchanges"]]
    assert "agent_run" in tools and tools[-1] != "agent_run"
    runs = [e for e in rec["exchanges"] if e["tool"] in ("agent_run", "agent_approve")]
    assert runs[-1]["structuredContent"]["status"] == "completed"
    roles = [m["role"] for m in rec["transcript"]]
    assert roles[0] == "user" and roles[-1] == "assistant" and "tool" in roles
    assert all(m.get("decision") in ("allow", None) for m in rec["transcript"] if m["role"] == "tool")
    if name == "refactor-with-approval":
        assert tools.count("agent_approve") == 2
        assert [e["structuredContent"]["status"] for e in runs] == ["awaiting_approval"] * 2 + ["completed"]
        assert (
            "order_total" in rec["files_after"]["inventory.py"]
            and "calc_total" not in rec["files_after"]["report.py"]
        )
    if name == "fix-failing-test":
        tool_out = [
            m["content"] for m in rec["transcript"] if m["role"] == "tool" and m["name"] == "run_command"
        ]
        assert "FAILED (failures=1)" in tool_out[0] and tool_out[-1].startswith("exit code 0")
        assert "sum(values) / len(values)" in rec["files_after"]["calc.py"]
