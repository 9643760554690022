"""Continuation across two separate `python -m mcp_api serve` processes that share one store."""

from __future__ import annotations

import httpx
import pytest
from integration.conftest import server_factory  # noqa: F401 - the shared live-server fixture
from mcp_helpers import Mcp
from model_servers import Step, agent_env, run_agent

pytestmark = pytest.mark.anyio


async def test_a_conversation_continues_on_another_server_process(server_factory, model, tmp_path):  # noqa: F811
    shared = {
        "SECURE_AGENT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
        **agent_env(model),
    }
    first_server = server_factory(shared)
    second_server = server_factory(shared)
    assert first_server.process.pid != second_server.process.pid

    async with httpx.AsyncClient(base_url=first_server.base_url, timeout=60) as http:
        first = Mcp(http=http, key=first_server.api_key, era="modern")
        model.push(
            Step.tools(("write_file", {"path": "note.txt", "content": "kiwi"})), Step.answer("noted KIWI")
        )
        started = await run_agent(first, prompt="write the word kiwi to note.txt")
    assert started["status"] == "completed", started
    assert (first_server.workspace_dir / "note.txt").read_text() == "kiwi"

    async with httpx.AsyncClient(base_url=second_server.base_url, timeout=60) as http:
        second = Mcp(http=http, key=second_server.api_key, era="legacy")
        model.push(Step.answer("you asked me to write kiwi"))
        continued = await run_agent(
            second, prompt="what did I ask before?", conversation_id=started["conversation_id"]
        )
        assert (
            continued["status"] == "completed" and continued["conversation_id"] == started["conversation_id"]
        )
        listed = await second.call("conversation_list")
    sent = model.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert "write the word kiwi" in sent[1]["content"] and sent[4]["content"] == "noted KIWI"
    assert listed["structuredContent"]["conversations"][0]["messages"] == 6
