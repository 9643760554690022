"""'ask' for a 2026-07-28 client that declares elicitation: agent_run answers input_required with an
elicitation, and the client's retry (inputResponses + requestState) resumes the run."""

from __future__ import annotations

import pytest
from mcp_helpers import Mcp
from model_servers import Step

pytestmark = pytest.mark.anyio


@pytest.fixture
def agent_overrides() -> dict:
    return {"policy": {"ask_tools": ["delete_file"]}}


def call_body(client: Mcp, arguments: dict, **extra) -> dict:
    body = client.body("tools/call", {"name": "agent_run", "arguments": arguments, **extra})
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = {"elicitation": {"form": {}}}
    return body


async def post(client: Mcp, body: dict) -> dict:
    from mcp_helpers import parse_rpc

    response = await client.http.post("/mcp", json=body, headers=client.headers("tools/call", "agent_run"))
    assert response.status_code == 200, response.text
    return parse_rpc(response)


@pytest.mark.parametrize(("accept", "kept"), [(True, False), (False, True)])
async def test_ask_becomes_an_elicitation_and_the_retry_resumes(http, model, workspace, accept, kept):
    (workspace / "old.txt").write_text("x")
    model.push(Step.tools(("delete_file", {"path": "old.txt"})), Step.answer("finished"))
    client = Mcp(http=http, era="modern")
    arguments = {"prompt": "delete old.txt"}
    first = (await post(client, call_body(client, arguments)))["result"]
    assert first["resultType"] == "input_required", first
    request = first["inputRequests"]["approval"]
    assert request["method"] == "elicitation/create" and "delete_file" in request["params"]["message"]
    assert (workspace / "old.txt").exists()

    answer = {"action": "accept", "content": {"approve": True}} if accept else {"action": "decline"}
    retry = call_body(
        client, arguments, inputResponses={"approval": answer}, requestState=first["requestState"]
    )
    second = (await post(client, retry))["result"]
    assert second["structuredContent"]["status"] == "completed", second
    assert (workspace / "old.txt").exists() is kept
    decisions = [a["decision"] for a in second["structuredContent"]["actions"]]
    assert decisions == ["allow" if accept else "deny"]
