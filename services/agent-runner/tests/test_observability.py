"""Runner observability: a span and one JSON log line per call, joined to the caller's trace and
request; the client propagates both; the runner's token never reaches a log line."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import httpx
import pytest
from agent_runner import observability
from agent_runner.api import create_app
from agent_runner.client import RunnerClient, RunnerError
from agent_runner.observability import context, tracing
from agent_runner.observability.logs import configure_logging, make_handler
from agent_runner.protocol import ReadFileRequest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

pytestmark = pytest.mark.anyio

TOKEN = "runner-token-" + "t" * 32
_exporter = InMemorySpanExporter()
_installed = False


@pytest.fixture
def spans():
    global _installed
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if not _installed:
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        _installed = True
    _exporter.clear()
    yield _exporter


def _capture(level: int):
    stream = io.StringIO()
    handler = make_handler("agent-runner", "json", stream=stream)
    root = logging.getLogger()
    root.addHandler(handler)
    before = root.level
    root.setLevel(level)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


@pytest.fixture
def logs():
    """The JSON lines of a runner at DEBUG (successful calls are logged at DEBUG)."""
    yield from _capture(logging.DEBUG)


@pytest.fixture
def info_logs():
    """The JSON lines of a runner at INFO (the level mcp-api gives its runners by default)."""
    yield from _capture(logging.INFO)


@pytest.fixture
async def client(tmp_path: Path):
    (tmp_path / "a.txt").write_text("a")
    app = create_app(tmp_path, TOKEN, "t/w")
    runner = RunnerClient(token=TOKEN)
    await runner._http.aclose()
    runner._http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://runner", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    async with app.router.lifespan_context(app):
        yield runner, app
    await runner.aclose()


async def test_call_is_one_trace_across_client_and_runner_with_joined_log_lines(client, spans, logs):
    runner, _ = client
    observability.register_secret(TOKEN)
    tracer = trace.get_tracer("test")
    with (
        context.bind(request_id="req-123", tenant=context.hash_tenant("acme"), mcp_method="tools/call", tool="read_file"),
        tracer.start_as_current_span("caller") as caller,
    ):
        await runner.call("files/read", ReadFileRequest(path="a.txt"))
        with pytest.raises(RunnerError):
            await runner.call("files/read", ReadFileRequest(path="missing.txt"))
    finished: dict = {}
    for span in spans.get_finished_spans():
        finished.setdefault((span.name, span.kind.name), span)  # the first call's spans
    client_span = finished[("runner files/read", "CLIENT")]
    server_span = finished[("runner files/read", "SERVER")]
    assert client_span.parent.span_id == caller.get_span_context().span_id
    assert server_span.parent.span_id == client_span.context.span_id
    assert server_span.context.trace_id == caller.get_span_context().trace_id
    lines = [line for line in logs() if line["message"] == "runner request"]
    ok, missing = lines[-2], lines[-1]
    assert ok["trace_id"] == format(caller.get_span_context().trace_id, "032x")
    assert ok["span_id"] == format(server_span.context.span_id, "016x")
    assert (ok["request_id"], ok["tenant"], ok["tool"], ok["op"], ok["outcome"]) == (
        "req-123", context.hash_tenant("acme"), "read_file", "files/read", "ok",
    )  # fmt: skip
    assert (missing["outcome"], missing["error_code"], missing["status"]) == ("rejected", "not_found", 404)
    # A success repeats mcp-api's access line: DEBUG. A refused or failed call: INFO.
    assert (ok["level"], missing["level"]) == ("DEBUG", "INFO")
    assert "acme" not in json.dumps(lines)


async def test_at_info_only_refused_and_failed_calls_are_logged(client, info_logs):
    runner, _ = client
    with context.bind(request_id="req-456"):
        await runner.call("files/read", ReadFileRequest(path="a.txt"))
        with pytest.raises(RunnerError):
            await runner.call("files/read", ReadFileRequest(path="missing.txt"))
    lines = [line for line in info_logs() if line["message"] == "runner request"]
    assert [(line["op"], line["outcome"], line["level"]) for line in lines] == [
        ("files/read", "rejected", "INFO")
    ]
    assert lines[0]["request_id"] == "req-456"


async def test_refused_calls_are_logged_without_the_token(client, logs):
    _, app = client
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://runner") as raw:
        response = await raw.post(
            "/v1/files/read", json={"path": "a.txt"},
            headers={"Authorization": f"Bearer {TOKEN}x", "x-request-id": "bad id with spaces"},
        )  # fmt: skip
    assert response.status_code == 401
    line = [line for line in logs() if line["message"] == "runner request"][-1]
    assert line["outcome"] == "unauthorized" and line["error_code"] == "unauthorized"
    assert line["request_id"] != "bad id with spaces" and len(line["request_id"]) == 32
    assert TOKEN not in json.dumps(logs())


def test_setup_runner_reads_its_environment(monkeypatch):
    root = logging.getLogger()
    before = list(root.handlers), root.level
    monkeypatch.setenv(observability.LOG_FORMAT_ENV, "text")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    try:
        observability.setup_runner("info")
        ours = [h for h in root.handlers if getattr(h, "_secure_agent_handler", False)]
        assert len(ours) == 1 and type(ours[0].formatter).__name__ == "TextFormatter"
        assert root.level == logging.INFO
        assert tracing.setup_tracing("x") is None  # OTEL_SDK_DISABLED wins
    finally:
        configure_logging("agent-runner", before[1])
        for handler in [h for h in root.handlers if getattr(h, "_secure_agent_handler", False)]:
            root.removeHandler(handler)
        for handler in before[0]:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(before[1])


def test_otlp_endpoint_resolution(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert tracing.otlp_traces_endpoint() is None
    assert tracing.otlp_traces_endpoint("http://c:4318/") == "http://c:4318/v1/traces"
    assert tracing.otlp_traces_endpoint("http://c:4318/v1/traces") == "http://c:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318")
    assert tracing.otlp_traces_endpoint() == "http://base:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://exact/v1/traces")
    assert tracing.otlp_traces_endpoint() == "http://exact/v1/traces"
    assert tracing.extract({"traceparent": "garbage"}) is None
    assert tracing.extract({}) is None


def test_context_helpers():
    assert context.outgoing_headers() == {}
    context.annotate(tenant="ignored")  # no context: nothing to annotate
    with context.bind(request_id="r1") as ctx:
        context.annotate(tenant="t1")
        assert ctx.tenant == "t1" and context.outgoing_headers() == {"x-request-id": "r1", "x-secure-agent-tenant": "t1"}
    assert context.accept_request_id("ok-id.1") == "ok-id.1"
    assert context.safe_label("has space") is None
    context.set_tenant_hash_key("k1")
    first = context.hash_tenant("acme")
    context.set_tenant_hash_key(None)
    assert first != context.hash_tenant("acme") and len(first) == 16


def test_each_field_is_redacted_once_and_still_redacted(monkeypatch) -> None:
    """One redaction pass per record: event() redacts its fields, the filter does not redo them and the
    formatter does not rescan them; yet no secret survives, whoever logs it and however."""
    from agent_runner.observability import logs, redaction

    calls: list[str | None] = []
    real = redaction.redact_value

    def counting(value, key=None, _depth=0):  # noqa: ANN001, ANN202
        if _depth == 0:
            calls.append(key)
        return real(value, key, _depth)

    monkeypatch.setattr(logs, "redact_value", counting)
    monkeypatch.setattr(redaction, "redact_value", counting)
    stream = io.StringIO()
    handler = make_handler("mcp-api", "json", stream=stream)
    logger = logging.getLogger("test.redact_once")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    secret = "sk-" + "a" * 40
    try:
        with context.bind(tool=f"evil {secret}"):
            logs.event(logger, logging.INFO, "tool call", detail=f"key {secret}", arguments={"content": secret})
        assert sorted(k for k in calls if k) == ["arguments", "detail"]  # once each, by event()
        calls.clear()
        logger.info("plain %s", secret, extra={"note": secret})  # not through event(): the filter redacts
        assert calls == ["note"]
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert secret not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["tool"] == "evil sk-[REDACTED]" and first["detail"] == "key sk-[REDACTED]"
    assert first["arguments"] == {"content": "str[43]"}
    assert second["message"] == "plain sk-[REDACTED]" and second["note"] == "sk-[REDACTED]"


def test_a_formatter_without_the_filter_still_redacts() -> None:
    from agent_runner.observability.logs import JsonFormatter

    secret = "sk-" + "b" * 40
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.note = f"token={secret}"
    line = JsonFormatter("mcp-api").format(record)
    assert secret not in line and "[REDACTED]" in line


def test_short_safe_tokens_skip_the_scan_but_no_secret_shape_does() -> None:
    """The fast path for short tokens: the shortest secret shapes are 15 characters or need a space,
    ':', '=' or '@'; and registered values of any length are still replaced."""
    from agent_runner.observability import redaction
    from agent_runner.observability.redaction import REDACTED, redact_text

    for token in ("ok", "files/read", "2025-11-25", "tools/call", "0123456789abcdef"[:14]):
        assert redact_text(token) == token
    for secret in ("sk-ant-abcdefgh", "xoxb-1234567890", "pwd=hunter2", "bearer abcd", "https://u:p@h", "AKIA" + "A" * 16):
        assert redact_text(secret) != secret, secret
    # every pattern, on every string of the fast path's alphabet up to 14 characters built from its
    # own minimal example, finds nothing (a pattern that could match a short token would fail here)
    examples = ["sk-ant-abcdefg", "xoxb-123456789", "sk-abcdefghijk", "AKIAABCDEFGHIJ", "eyJabcde.eyJab", "ghp_abcdefghij"]
    for example in examples:
        assert len(example) <= 14 and redaction._SAFE_TOKEN.fullmatch(example)
        assert all(not pattern.search(example) for pattern, _ in redaction._PATTERNS), example
    try:
        redaction.register_secret("hunter22")
        assert redact_text("hunter22") == REDACTED
    finally:
        redaction.forget_secrets()
