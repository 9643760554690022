"""One request crossing mcp-api → runner: spans (mcp-api in memory, the runner process over OTLP) and
the JSON log lines of both processes share one trace, and each line names the span it was
written in. A `traceparent` in `params._meta` continues the client's trace."""

from __future__ import annotations

import json
import time

import pytest
from agent_runner.observability import LOG_LEVEL_ENV
from mcp_api.app import create_app
from mcp_api.observability import tracing
from mcp_helpers import Mcp

pytestmark = pytest.mark.anyio

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
async def traced_http(settings, spans, otlp_collector, monkeypatch):
    import httpx

    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    application = create_app(settings)
    # Only the runner exports to the collector; this process keeps its spans in memory.
    monkeypatch.setitem(tracing._runner_env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_collector.url)
    monkeypatch.setitem(tracing._runner_env, "OTEL_BSP_SCHEDULE_DELAY", "100")
    # The runner logs a successful call at DEBUG (mcp-api's access line is its record at INFO);
    # at DEBUG its line for the call can be checked against the trace.
    monkeypatch.setitem(tracing._runner_env, LOG_LEVEL_ENV, "debug")
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080", timeout=30) as client:
            yield client


def _runner_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{") and '"service": "agent-runner"' in line:
            lines.append(json.loads(line))
    return lines


async def _wait_for_runner_span(collector, name: str, trace_id: str, limit_s: float = 15.0):
    import anyio

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        found = [s for s in collector.spans if s.name == name and s.trace_id == trace_id]
        if found:
            return found[0]
        await anyio.sleep(0.1)
    raise AssertionError(f"runner span {name} not exported; got {[(s.name, s.trace_id) for s in collector.spans]}")


async def test_trace_ids_in_logs_match_exported_spans_across_mcp_api_and_runner(
    traced_http, spans, otlp_collector, json_logs, capfd, workspace, layer_lines
):
    (workspace / "t.txt").write_text("traced")
    mcp = Mcp(http=traced_http)
    result = await mcp.call("read_file", path="t.txt")
    assert not result.get("isError"), result

    finished = {s.name: s for s in spans.get_finished_spans()}
    http_span = finished["POST /mcp"]
    mcp_span = finished["tools/call read_file"]
    tool_span = finished["tool read_file"]
    client_span = finished["runner files/read"]
    trace_id = format(http_span.context.trace_id, "032x")
    hexid = lambda span: format(span.context.span_id, "016x")  # noqa: E731
    # one trace, properly nested: HTTP → MCP method → tool → runner client
    for span in (mcp_span, tool_span, client_span):
        assert format(span.context.trace_id, "032x") == trace_id
    assert mcp_span.parent.span_id == http_span.context.span_id
    assert tool_span.parent.span_id == mcp_span.context.span_id
    assert client_span.parent.span_id == tool_span.context.span_id

    # the runner's SERVER span, exported by the runner process over OTLP, continues the same trace
    runner_span = await _wait_for_runner_span(otlp_collector, "runner files/read", trace_id)
    assert runner_span.parent_span_id == hexid(client_span)
    assert runner_span.service == "agent-runner"

    # mcp-api's log lines carry the ids of the span they were written in
    lines = json_logs.lines()
    by_message = {line["message"]: line for line in lines if line.get("trace_id") == trace_id}
    assert by_message["http request"]["span_id"] == hexid(http_span)
    assert by_message["mcp request"]["span_id"] == hexid(mcp_span)
    assert by_message["tool call"]["span_id"] == hexid(tool_span)
    request_id = by_message["http request"]["request_id"]
    assert all(by_message[m]["request_id"] == request_id for m in ("mcp request", "tool call"))

    # and so do the runner's, written by another process
    runner_lines = [
        line for line in _runner_lines(capfd.readouterr().err) if line["message"] == "runner request"
    ]
    assert runner_lines, "the runner wrote no request line"
    line = runner_lines[-1]
    assert line["trace_id"] == trace_id
    assert line["span_id"] == runner_span.span_id
    assert line["request_id"] == request_id
    assert line["tenant"] == by_message["tool call"]["tenant"] != "dev"
    assert (line["mcp_method"], line["tool"], line["op"], line["outcome"]) == (
        "tools/call", "read_file", "files/read", "ok",
    )  # fmt: skip


async def test_traceparent_in_meta_continues_the_clients_trace(
    traced_http, spans, otlp_collector, json_logs, workspace, layer_lines
):
    (workspace / "t.txt").write_text("traced")
    mcp = Mcp(http=traced_http, era="modern")
    body = mcp.body("tools/call", {"name": "read_file", "arguments": {"path": "t.txt"}})
    body["params"]["_meta"]["traceparent"] = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    response = await traced_http.post("/mcp", json=body, headers=mcp.headers("tools/call", "read_file"))
    assert response.status_code == 200

    finished = {s.name: s for s in spans.get_finished_spans()}
    mcp_span = finished["tools/call read_file"]
    assert format(mcp_span.context.trace_id, "032x") == CLIENT_TRACE
    assert format(mcp_span.parent.span_id, "016x") == CLIENT_SPAN
    for name in ("tool read_file", "runner files/read"):
        assert format(finished[name].context.trace_id, "032x") == CLIENT_TRACE
    await _wait_for_runner_span(otlp_collector, "runner files/read", CLIENT_TRACE)
    # The HTTP span could not know the body's trace when it started: it links to it instead.
    http_span = finished["POST /mcp"]
    assert [format(link.context.trace_id, "032x") for link in http_span.links] == [CLIENT_TRACE]
    access = [line for line in json_logs.lines() if line["message"] == "http request" and line["path"] == "/mcp"]
    assert access[-1]["mcp_trace_id"] == CLIENT_TRACE
    tool_lines = [line for line in json_logs.lines() if line["message"] == "tool call"]
    assert tool_lines[-1]["trace_id"] == CLIENT_TRACE


async def test_traceparent_header_continues_an_http_callers_trace(traced_http, spans):
    response = await traced_http.get("/health", headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    assert response.status_code == 200
    assert len(response.headers["x-request-id"]) == 32
    span = next(s for s in spans.get_finished_spans() if s.name == "GET /health")
    assert format(span.context.trace_id, "032x") == CLIENT_TRACE


async def test_model_call_span_propagates_traceparent_to_the_provider(spans):
    with tracing.model_call_span("anthropic", "claude-test") as headers:
        assert headers["traceparent"].startswith("00-")
    with pytest.raises(TimeoutError), tracing.model_call_span("openai", "gpt-test"):
        raise TimeoutError
    finished = spans.get_finished_spans()
    ok, failed = finished[-2], finished[-1]
    assert ok.name == "chat claude-test" and ok.attributes["gen_ai.system"] == "anthropic"
    assert headers["traceparent"].split("-")[1] == format(ok.context.trace_id, "032x")
    assert failed.attributes["error.type"] == "TimeoutError"


def test_runner_env_carries_log_and_trace_settings(tmp_path):
    from mcp_api.settings import Settings

    def settings(**tracing_settings) -> Settings:
        return Settings(data_dir=tmp_path, tracing={"enabled": False, **tracing_settings})

    try:
        tracing.setup_tracing(settings(otlp_endpoint="http://collector:4318"))
        env = tracing.runner_env()
        assert env["AGENT_RUNNER_LOG_FORMAT"] == "json" and env["OTEL_SDK_DISABLED"] == "true"
        assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://collector:4318/v1/traces"
        # collector credentials never reach a runner
        tracing.setup_tracing(settings(otlp_endpoint="http://collector:4318", otlp_headers={"x-token": "secretsecret"}))
        assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in tracing.runner_env()
        assert "secretsecret" not in json.dumps(tracing.runner_env())
    finally:
        tracing.setup_tracing(Settings(data_dir=tmp_path))
