"""Cancellation, timeouts, progress, missing configuration and the agent metrics."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import httpx
import pytest
from mcp_api.app import create_app
from mcp_api.observability.metrics import AGENT_RUNS, MODEL_TOKENS
from mcp_api.settings import Settings
from mcp_helpers import TEST_KEY, Mcp, parse_rpc
from model_servers import Step, run_agent

pytestmark = pytest.mark.anyio


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry))
    return found


async def test_cancel_stops_the_loop_and_kills_the_running_command(client, model, workspace):
    marker = "37.4321"
    model.push(Step.tools(("run_command", {"command": ["sleep", marker]})), Step.answer("never reached"))
    cancelled_before = AGENT_RUNS.labels(outcome="cancelled")._value.get()
    results: dict = {}

    async def run() -> None:
        results["run"] = await run_agent(client, prompt="sleep a while")

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(20):
            while not processes_with(marker):  # noqa: ASYNC110 - polling /proc, nothing to wait on
                await anyio.sleep(0.05)
        listed = (await client.call("conversation_list"))["structuredContent"]["conversations"]
        assert listed[0]["status"] == "running"
        answer = await client.call("agent_cancel", conversation_id=listed[0]["conversation_id"])
        assert answer["structuredContent"]["cancel_requested"] is True
    result = results["run"]
    assert result["status"] == "cancelled" and "cancelled" in result["error"]
    with anyio.fail_after(10):
        while processes_with(marker):  # noqa: ASYNC110 - polling /proc, nothing to wait on
            await anyio.sleep(0.05)
    assert len(model.requests) == 1
    assert AGENT_RUNS.labels(outcome="cancelled")._value.get() == cancelled_before + 1
    saved = (await client.call("conversation_get", conversation_id=result["conversation_id"]))[
        "structuredContent"
    ]
    assert saved["status"] == "idle" and [m["role"] for m in saved["transcript"]] == ["user", "assistant"]


async def test_timeout_returns_a_clear_error_and_saves_the_transcript(client, model, workspace):
    marker = "41.9876"
    model.push(Step.tools(("run_command", {"command": ["sleep", marker]})))
    result = await run_agent(client, prompt="too slow", timeout_s=1.5)
    assert result["status"] == "timeout" and "wall-time budget exhausted" in result["error"]
    assert not processes_with(marker)
    saved = (await client.call("conversation_get", conversation_id=result["conversation_id"]))[
        "structuredContent"
    ]
    assert [m["role"] for m in saved["transcript"]] == ["user", "assistant"]
    # The interrupted call gets a synthetic result when the conversation continues.
    model.push(Step.answer("ok"))
    await run_agent(client, prompt="go on", conversation_id=result["conversation_id"])
    sent = model.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "user"]
    assert "not executed" in sent[3]["content"]


async def test_token_budget_and_metrics(client, model, workspace, settings):
    settings.agent.max_tokens = 200  # each scripted reply costs 120 tokens
    tokens_before = MODEL_TOKENS.labels(provider="openai", model="scripted-openai", kind="input")._value.get()
    model.push(*[Step.tools(("list_directory", {})) for _ in range(3)])
    result = await run_agent(client, prompt="spend")
    assert result["status"] == "limit" and "token budget exhausted" in result["error"]
    assert result["usage"]["steps"] == 2
    after = MODEL_TOKENS.labels(provider="openai", model="scripted-openai", kind="input")._value.get()
    assert after == tokens_before + 200
    metrics = (await client.http.get("/metrics")).text
    for name in (
        "secure_agent_agent_runs_total",
        "secure_agent_agent_tool_calls_total",
        "secure_agent_agent_steps_bucket",
    ):
        assert name in metrics


async def test_progress_notifications_per_step(http, model, workspace):
    model.push(Step.tools(("list_directory", {})), Step.answer("done"))
    client = Mcp(http=http, era="modern")
    body = client.body("tools/call", {"name": "agent_run", "arguments": {"prompt": "look"}})
    body["params"]["_meta"]["progressToken"] = "p-1"
    response = await http.post("/mcp", json=body, headers=client.headers("tools/call", "agent_run"))
    assert response.status_code == 200
    assert parse_rpc(response)["result"]["structuredContent"]["status"] == "completed"
    assert response.text.count("notifications/progress") == 2, response.text


async def test_no_provider_configured_names_the_settings_and_other_tools_work(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data", dev_api_key=TEST_KEY, runner={"idle_timeout_s": 60})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost:8080", timeout=30
        ) as http:
            client = Mcp(http=http, era="modern")
            message = await client.request(
                "tools/call", {"name": "agent_run", "arguments": {"prompt": "hi"}}, name="agent_run"
            )
            result = message["result"]
            assert result["isError"] is True
            text = result["content"][0]["text"]
            assert (
                "SECURE_AGENT_AGENT__PROVIDERS" in text
                and "SECURE_AGENT_AGENT__ROLES__DEFAULT__MODEL" in text
            )
            listing = await client.call("list_directory", path=".")
            assert listing.get("isError") is not True
