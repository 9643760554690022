"""The real agent loop against scripted model servers (OpenAI and Anthropic wire formats, real HTTP)."""

from __future__ import annotations

import json

import pytest
from model_servers import Step, run_agent

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("provider_kind", ["openai", "anthropic"])
async def test_multi_step_run_edits_a_file_and_runs_a_command(client, model, workspace, provider_kind):
    (workspace / "greet.py").write_text("print('hello')\n")
    model.push(
        Step.tools(("read_file", {"path": "greet.py"})),
        Step.tools(
            ("edit_file", {"path": "greet.py", "edits": [{"old_text": "hello", "new_text": "bonjour"}]})
        ),
        Step.tools(("run_command", {"command": ["python3", "greet.py"]}), ("run_command", {"shell": "env"})),
        Step.answer("greet.py now prints bonjour"),
    )
    result = await run_agent(client, prompt="make greet.py say bonjour and run it")
    assert result["status"] == "completed", result
    assert result["answer"] == "greet.py now prints bonjour"
    assert (workspace / "greet.py").read_text() == "print('bonjour')\n"
    assert [a["tool"] for a in result["actions"]] == ["read_file", "edit_file", "run_command", "run_command"]
    assert all(a["decision"] == "allow" and a["outcome"] == "ok" for a in result["actions"]), result[
        "actions"
    ]
    assert result["usage"] == {"steps": 4, "input_tokens": 400, "output_tokens": 80}
    assert result["conversation_id"].startswith("conv_")
    assert all(
        p.endswith("/chat/completions" if provider_kind == "openai" else "/messages") for p in model.paths
    )
    # The model saw the command's output; the provider key never reached the sandbox's environment.
    last = str(model.requests[-1]["messages"])
    assert "bonjour" in last
    assert "sk-test-provider-secret" not in last
    assert "SECURE_AGENT" not in last
    # Tool schemas offered to the model: workspace tools, without workspace/background.
    tools = model.requests[0]["tools"]
    names = {t["function"]["name"] if provider_kind == "openai" else t["name"] for t in tools}
    assert {"read_file", "edit_file", "run_command"} <= names and "agent_run" not in names

    transcript = (await client.call("conversation_get", conversation_id=result["conversation_id"]))[
        "structuredContent"
    ]
    roles = [m["role"] for m in transcript["transcript"]]
    assert roles == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]


async def test_continuation_sends_the_earlier_context(client, model, workspace):
    model.push(Step.answer("first answer"))
    first = await run_agent(client, prompt="remember the word PAPAYA")
    assert first["status"] == "completed"
    model.push(Step.answer("it was PAPAYA"))
    second = await run_agent(client, prompt="which word?", conversation_id=first["conversation_id"])
    assert second["conversation_id"] == first["conversation_id"]
    sent = model.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert "PAPAYA" in sent[1]["content"] and sent[2]["content"] == "first answer"

    listed = (await client.call("conversation_list"))["structuredContent"]["conversations"]
    assert [c["conversation_id"] for c in listed] == [first["conversation_id"]]
    assert listed[0]["messages"] == 4
    deleted = await client.call("conversation_delete", conversation_id=first["conversation_id"])
    assert deleted["structuredContent"]["deleted"] is True
    gone = await client.request("tools/call", {"name": "conversation_get", "arguments": {
        "conversation_id": first["conversation_id"]}}, name="conversation_get")  # fmt: skip
    assert gone["result"]["isError"] is True


async def test_step_budget_is_exhausted_cleanly(client, model, workspace):
    model.push(*[Step.tools(("list_directory", {"path": "."})) for _ in range(5)])
    result = await run_agent(client, prompt="loop forever", max_steps=3)
    assert result["status"] == "limit"
    assert "step budget exhausted" in result["error"]
    assert result["usage"]["steps"] == 3
    assert len(model.requests) == 3


@pytest.mark.parametrize("provider_kind", ["openai", "anthropic"])
async def test_provider_500_and_429_are_retried_then_succeed(client, model, workspace, provider_kind):
    model.push(Step.status(500), Step.status(429), Step.answer("ok after retries"))
    result = await run_agent(client, prompt="hi")
    assert result["status"] == "completed" and result["answer"] == "ok after retries"
    assert len(model.requests) == 3


@pytest.mark.parametrize("provider_kind", ["openai", "anthropic"])
async def test_provider_keeps_failing_gives_a_clear_error_and_keeps_the_prompt(
    client, model, workspace, provider_kind
):
    model.push(*[Step.status(500)] * 4)
    result = await run_agent(client, prompt="important request")
    assert result["status"] == "error"
    assert "failed after 4 attempts" in result["error"] and "server" in result["error"]
    transcript = (await client.call("conversation_get", conversation_id=result["conversation_id"]))[
        "structuredContent"
    ]
    assert transcript["transcript"][0] == {"role": "user", "content": "important request"}
    assert len(model.requests) == 4  # 1 try + 3 retries (the default max_retries)
    # Nothing lost: continuing the same conversation works once the provider recovers.
    model.push(Step.answer("recovered"))
    again = await run_agent(client, prompt="try again", conversation_id=result["conversation_id"])
    assert again["status"] == "completed"
    assert "important request" in str(model.requests[-1]["messages"])


@pytest.mark.parametrize("provider_kind", ["openai", "anthropic"])
async def test_malformed_tool_call_json_is_refused_and_the_run_continues(
    client, model, workspace, provider_kind
):
    model.push(
        Step.raw_tool("write_file", '{"path": "x.txt", "content": '),
        Step.tools(("no_such_tool", {})),
        Step.answer("gave up"),
    )
    result = await run_agent(client, prompt="write x")
    assert result["status"] == "completed"
    decisions = [(a["tool"], a["decision"]) for a in result["actions"]]
    assert decisions == [("write_file", "deny"), ("no_such_tool", "deny")]
    told = str(model.requests[1]["messages"])
    assert "not a valid JSON object" in told
    assert not (workspace / "x.txt").exists()


async def test_conversations_join_tenant_export_and_erase(app, client, model, workspace, tmp_path):
    import tarfile
    from types import SimpleNamespace

    from mcp_api.agent import tenant_data

    model.push(Step.answer("hello"))
    result = await run_agent(client, prompt="say hello")
    ctx = SimpleNamespace(store=app.state.services.store)
    with tarfile.open(tmp_path / "export.tar", "w") as tar:
        assert await tenant_data._export(ctx, "dev", tar) == {"count": 1}
    with tarfile.open(tmp_path / "export.tar") as tar:
        exported = json.load(tar.extractfile("agent_conversations.json"))
    assert exported[0]["conversation_id"] == result["conversation_id"]
    assert exported[0]["transcript"][0]["content"] == "say hello"
    assert await tenant_data._erase(ctx, "other") == 0
    assert await tenant_data._erase(ctx, "dev") == 1
    assert (await client.call("conversation_list"))["structuredContent"]["conversations"] == []


async def test_auth_errors_are_not_retried_and_a_busy_conversation_is_refused(app, client, model, workspace):
    model.push(Step.status(401))
    result = await run_agent(client, prompt="x")
    assert result["status"] == "error" and "auth" in result["error"] and len(model.requests) == 1
    store = app.state.services.agent.conversations
    assert (
        await store.claim("dev", result["conversation_id"], stale_after_s=60) is not None
    )  # another run holds it
    busy = await client.request("tools/call", {"name": "agent_run", "arguments": {
        "prompt": "y", "conversation_id": result["conversation_id"]}}, name="agent_run")  # fmt: skip
    assert busy["result"]["isError"] and "busy" in busy["result"]["content"][0]["text"]
    other = await client.request("tools/call", {"name": "agent_run", "arguments": {
        "prompt": "y", "conversation_id": "conv_unknown"}}, name="agent_run")  # fmt: skip
    assert other["result"]["isError"] and "no conversation" in other["result"]["content"][0]["text"]


async def test_another_tenant_cannot_see_or_touch_a_conversation(app, client, model, workspace):
    from mcp_helpers import Mcp

    model.push(Step.answer("private answer"))
    mine = await run_agent(client, prompt="private prompt")
    key, _ = await app.state.services.keys.create("other", "intruder", ["agent", "files:read"])
    intruder = Mcp(http=client.http, key=key, era="modern")
    assert (await intruder.call("conversation_list"))["structuredContent"]["conversations"] == []
    cid = mine["conversation_id"]
    for tool, arguments in [
        ("conversation_get", {"conversation_id": cid}),
        ("conversation_delete", {"conversation_id": cid}),
        ("agent_run", {"prompt": "continue", "conversation_id": cid}),
        ("agent_approve", {"conversation_id": cid, "token": "t", "decision": "approve"}),
        ("agent_cancel", {"conversation_id": cid}),
    ]:
        message = await intruder.request("tools/call", {"name": tool, "arguments": arguments}, name=tool)
        assert message["result"]["isError"], (tool, message)
        assert "private" not in str(message)
    assert (await client.call("conversation_get", conversation_id=cid))["structuredContent"]["messages"] == 2
