"""The SQLite restore drill of docs/backup-and-recovery.md, run command for command: a key and an agent
conversation are created on a live server, the documented backup (`secure-agent store backup`) runs
while it serves, the data dir is wiped, the documented restore (`secure-agent store restore`) and checks
run, and a restarted server shows the conversation and file."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import docs_helpers as h  # noqa: E402
from model_servers import ScriptedModel, Step, agent_env  # noqa: E402

pytestmark = pytest.mark.integration
DOC = h.REPO / "docs" / "backup-and-recovery.md"


def test_sqlite_restore_drill(tmp_path: Path) -> None:
    blocks = h.marked_blocks(DOC)
    assert {"backup", "wipe", "restore", "verify", "verify-server"} <= set(blocks), sorted(blocks)
    model = ScriptedModel().start()
    env = h.hermetic_env(SECURE_AGENT_DEV_API_KEY=h.FIXED_KEY, **agent_env(model))
    env["PATH"] = f"{h.uv_shim(tmp_path)}:{env['PATH']}"
    work = tmp_path / "checkout"  # stands for the directory `make run` keeps .data/ in
    work.mkdir()
    server = h.start_server(work, env)
    try:
        # A tenant key (the README's command) and an agent conversation that writes a file.
        created = h.run_bash(
            "uv run secure-agent keys create --tenant acme --scope files:read --scope files:write --scope agent",
            work,
            env,
        )
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1]
        assert key.startswith("sa_")
        model.push(
            Step.tools(("write_file", {"path": "notes.md", "content": "restored?\n"})),
            Step.answer("wrote notes.md"),
        )
        result = h.mcp_call(server.base_url, key, "agent_run", prompt="write notes.md")
        conversation_id = result["structuredContent"]["conversation_id"]
        assert result["structuredContent"]["status"] == "completed", result

        backup = h.run_bash(blocks["backup"], work, env)  # online, while the server serves
        assert backup.returncode == 0, backup.stdout + backup.stderr + "\n".join(map(str, work.rglob("*")))
        assert "integrity ok" in backup.stdout and "secure-agent store backup" in blocks["backup"]
    finally:
        server.stop()
        model.stop()

    saved_keys = json.loads((work / "backups/drill/keys.json").read_text())
    assert {k["tenant"] for k in saved_keys} == {"dev", "acme"}

    wipe = h.run_bash(blocks["wipe"], work, env)
    assert wipe.returncode == 0 and not (work / ".data").exists()

    restore = h.run_bash(blocks["restore"], work, env)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert "secure-agent store restore" in blocks["restore"] and "Restored" in restore.stdout
    assert not list((work / ".data").glob("*.bak"))  # nothing was there to replace
    verify = h.run_bash(blocks["verify"], work, env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert re.search(r"audit log intact: \d+ records", verify.stdout) and "keys restored" in verify.stdout
    assert (work / ".data/workspaces/acme/default/notes.md").read_text() == "restored?\n"

    server = h.start_server(work, env)
    try:
        script = blocks["verify-server"].replace("localhost:8080", f"localhost:{server.port}")
        listed = h.run_bash(script, work, {**env, "KEY": key})
        assert listed.returncode == 0, listed.stderr
        conversations = json.loads(listed.stdout)["result"]["structuredContent"]["conversations"]
        assert [c["conversation_id"] for c in conversations] == [conversation_id]
        # The transcript came back too, and the restored key still works for the agent's tenant.
        saved = h.mcp_call(server.base_url, key, "conversation_get", conversation_id=conversation_id)
        roles = [m["role"] for m in saved["structuredContent"]["transcript"]]
        assert roles[0] == "user" and "tool" in roles and roles[-1] == "assistant", roles
    finally:
        server.stop()
