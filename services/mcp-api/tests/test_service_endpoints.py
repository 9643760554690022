"""/health, /ready, /metrics and /diagnostics."""

from __future__ import annotations

import pytest
from mcp_helpers import TEST_KEY, Mcp

pytestmark = pytest.mark.anyio


async def test_health_needs_nothing(http):
    response = await http.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_ready_checks_store_and_runners(http):
    response = await http.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["store"]["ok"] and body["checks"]["runners"]["backend"] == "local"


async def test_ready_reports_broken_store(app, http):
    await app.state.services.store.engine.dispose()
    app.state.services.store.url = "broken"
    # Point the engine at a path that cannot exist, as a lost database volume would.
    from sqlalchemy.ext.asyncio import create_async_engine

    app.state.services.store.engine = create_async_engine("sqlite+aiosqlite:////nonexistent/dir/db.sqlite")
    response = await http.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["store"]["ok"] is False


async def test_metrics_count_mcp_methods_and_tools(http, workspace):
    (workspace / "m.txt").write_text("m")
    client = Mcp(http=http)
    await client.call("read_file", path="m.txt")
    await client.call("read_file", path="missing")
    text = (await http.get("/metrics")).text
    assert 'secure_agent_mcp_requests_total{era="legacy",method="tools/call",outcome="ok"}' in text
    assert 'secure_agent_tool_calls_total{outcome="ok",tool="read_file"}' in text
    assert 'secure_agent_tool_calls_total{outcome="rejected",tool="read_file"}' in text
    assert "secure_agent_tool_duration_seconds_bucket" in text
    assert "http_requests_total" in text or "http_request_duration_seconds" in text


async def test_diagnostics_requires_admin_and_redacts_secrets(app, http):
    assert (await http.get("/diagnostics")).status_code == 401
    key, _ = await app.state.services.keys.create("dev", "plain", ["files:read"])
    assert (await http.get("/diagnostics", headers={"authorization": f"Bearer {key}"})).status_code == 403
    response = await http.get("/diagnostics", headers={"authorization": f"Bearer {TEST_KEY}"})
    assert response.status_code == 200
    body = response.json()
    assert body["settings"]["dev_api_key"] == "**redacted**"
    assert TEST_KEY not in response.text
    assert "2026-07-28" in body["protocol_revisions"]["modern"]
    assert "2025-03-26" in body["protocol_revisions"]["legacy"]
    assert body["runner_backend"]["name"] == "local"
    # The sandbox report is the planner's own answer for the configured policy.
    from agent_runner.sandbox.probe import probe

    sandbox = body["sandbox"]
    caps = probe()
    assert sandbox["controls"]["landlock"] == (f"abi{caps.landlock_abi}" if caps.landlock_abi else sandbox["controls"]["landlock"])
    assert sandbox["commands_allowed"] is (sandbox["minimum_ok"] or sandbox["unconfined"])
    assert "seccomp=" in sandbox["summary"]


async def test_no_server_banner(http):
    response = await http.get("/health")
    assert "server" not in {k.lower() for k in response.headers}
