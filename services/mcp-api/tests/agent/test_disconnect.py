"""A client that goes away mid-run (closes its HTTP stream) cancels the run: the command is killed."""

from __future__ import annotations

import anyio
import httpx
import pytest
from integration.conftest import server_factory  # noqa: F401 - the shared live-server fixture
from mcp_helpers import Mcp
from model_servers import Step, agent_env

from .test_control import processes_with

pytestmark = pytest.mark.anyio


async def test_client_disconnect_cancels_the_run_and_kills_the_command(server_factory, model):  # noqa: F811
    server = server_factory(agent_env(model))
    marker = "53.2468"
    model.push(Step.tools(("run_command", {"command": ["sleep", marker]})), Step.answer("never"))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        client = Mcp(http=http, key=server.api_key, era="modern")
        body = client.body("tools/call", {"name": "agent_run", "arguments": {"prompt": "sleep"}})
        # A progress token makes the server commit the SSE stream at the first step's notification.
        body["params"]["_meta"]["progressToken"] = "p"
        headers = client.headers("tools/call", "agent_run")
        async with http.stream("POST", "/mcp", json=body, headers=headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            # Generous deadlines: the suite runs this beside fork bombs and output floods on 2 cores.
            with anyio.fail_after(60):
                while not processes_with(marker):  # noqa: ASYNC110 - polling /proc
                    await anyio.sleep(0.05)
        # Leaving the block closes the connection before the response is complete.
        with anyio.fail_after(30):
            while processes_with(marker):  # noqa: ASYNC110 - polling /proc
                await anyio.sleep(0.05)
        listed = await client.call("conversation_list")
    conversation = listed["structuredContent"]["conversations"][0]
    assert conversation["status"] == "idle"  # released, so the conversation can continue
    assert len(model.requests) == 1
