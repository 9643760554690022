"""JSON log lines: the fields, and secrets that never reach a line however they are smuggled in."""

from __future__ import annotations

import io
import json
import logging

import pytest
from agent_runner.observability import redaction
from agent_runner.observability.logs import FIELDS, configure_logging, event, make_handler
from mcp_api.observability.logging import apply_secrets, gunicorn_logconfig, setup_logging
from mcp_helpers import TEST_KEY, Mcp

pytestmark = pytest.mark.anyio

API_KEY = "sa_AbCdEfGhIjKl_" + "Zz9-_" * 8
ANTHROPIC = "sk-ant-api03-" + "A1b2C3d4E5" * 6
OPENAI = "sk-proj-" + "q8W7e6R5t4Y3" * 4
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OX0.c2lnbmF0dXJlLXZhbHVlLTEyMzQ1"
BEARER = "opaque-bearer-token-7f3a9c2e11"
PASSWORD = "hunter2-correct-horse"
GITHUB = "ghp_" + "x" * 36
AWS = "AKIAIOSFODNN7EXAMPLE"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
SECRETS = [API_KEY.split("_", 2)[2], ANTHROPIC[7:], OPENAI[3:], JWT, BEARER, PASSWORD, GITHUB, AWS, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"]


def _logger_to(stream: io.StringIO, fmt: str = "json") -> logging.Logger:
    logger = logging.getLogger(f"test.redaction.{fmt}.{id(stream)}")
    logger.handlers = [make_handler("mcp-api", fmt, stream=stream)]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_never_reach_a_line(fmt):
    stream = io.StringIO()
    log = _logger_to(stream, fmt)
    log.info("key %s used", API_KEY)
    log.info("headers: {'authorization': 'Bearer %s', 'x': 1}", BEARER)
    log.info("Authorization: Bearer %s", JWT)
    log.info(f"providers {ANTHROPIC} and {OPENAI} and {GITHUB} and {AWS}")
    log.info(f'body {{"password": "{PASSWORD}", "api_key": "{OPENAI}"}}')
    log.info(f"escaped json {json.dumps(json.dumps({'client_secret': PASSWORD}))}")
    log.info(f"dsn postgresql://app:{PASSWORD}@db:5432/x token={BEARER}")
    log.warning("pem %s", PEM)
    log.info("structured", extra={"headers": {"Authorization": f"Bearer {BEARER}", "Cookie": PASSWORD},
                                  "arguments": {"content": f"my password is {PASSWORD}", "path": "a.txt"},
                                  "nested": [{"api_key": OPENAI}, f"jwt {JWT}"]})  # fmt: skip
    try:
        raise RuntimeError(f"provider rejected {ANTHROPIC} with Authorization: Bearer {BEARER}")
    except RuntimeError:
        log.exception("call failed")
    event(log, logging.INFO, "event", token=BEARER, input_tokens=42, password=PASSWORD)
    text = stream.getvalue()
    for secret in SECRETS:
        assert secret not in text, (secret, text)
    assert "sa_AbCdEfGhIjKl_[REDACTED]" in text  # the key id survives: it names, it does not open
    if fmt == "json":
        assert '"input_tokens": 42' in text  # counts are not secrets
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        structured = next(line for line in lines if line["message"] == "structured")
        # tool arguments are reduced to names and sizes: unknown secret shapes cannot leak
        assert structured["arguments"] == {"content": f"str[{len('my password is ') + len(PASSWORD)}]", "path": "str[5]"}
        assert structured["headers"]["Cookie"] == "[REDACTED]"
        assert any("exc_info" in line and "RuntimeError" in line["exc_info"] for line in lines)


def test_registered_secrets_of_any_shape_are_redacted(settings):
    settings.tracing.otlp_headers = {"x-api": __import__("pydantic").SecretStr("plain-collector-credential")}
    apply_secrets(settings)
    stream = io.StringIO()
    _logger_to(stream).info("dev key %s and collector %s", TEST_KEY, "plain-collector-credential")
    assert TEST_KEY not in stream.getvalue() and "plain-collector-credential" not in stream.getvalue()
    redaction.register_secret("short")  # too short to register: would redact ordinary words
    assert redaction.redact_text("a short word") == "a short word"


def test_every_line_has_the_fields_in_order():
    stream = io.StringIO()
    _logger_to(stream).info("plain line")
    line = json.loads(stream.getvalue())
    assert list(line)[: len(FIELDS)] == list(FIELDS)
    assert line["timestamp"].endswith("Z") and line["level"] == "INFO" and line["service"] == "mcp-api"


async def test_one_info_line_per_successful_request_carries_every_layer(http, json_logs, workspace):
    """At INFO a successful tool call writes one line in mcp-api, the access line, with the fields of
    the MCP and tool layers (their own lines are DEBUG unless something went wrong)."""
    (workspace / "f.txt").write_text("x")
    await Mcp(http=http).call("read_file", path="f.txt")  # starts the runner (a line of its own)
    seen = len(json_logs.lines())
    await Mcp(http=http).call("read_file", path="f.txt")
    lines = [line for line in json_logs.lines()[seen:] if line["logger"].startswith("mcp_api")]
    assert [line["message"] for line in lines] == ["http request"], lines
    line = lines[0]
    for name in FIELDS:
        assert line[name] is not None, (name, line)
    assert (line["mcp_method"], line["tool"], line["outcome"]) == ("tools/call", "read_file", "ok")
    assert (line["mcp_outcome"], line["tool_outcome"], line["op"], line["era"]) == ("ok", "ok", "files/read", "legacy")
    assert line["error_code"] is None and line["tool_ms"] > 0 and line["protocol_version"]


async def test_a_failed_tool_call_keeps_its_own_line(http, json_logs, workspace):
    result = await Mcp(http=http).call("read_file", path="missing.txt")
    assert result.get("isError")
    lines = json_logs.lines()
    tool = next(line for line in lines if line["message"] == "tool call")
    assert (tool["level"], tool["outcome"], tool["error_code"]) == ("INFO", "rejected", "not_found")
    access = next(line for line in lines if line["message"] == "http request")
    assert (access["tool_outcome"], access["mcp_outcome"], access["error_code"]) == ("rejected", "tool_error", "not_found")
    assert access["request_id"] == tool["request_id"]


async def test_request_lines_carry_request_trace_tenant_method_tool_duration_outcome(
    http, json_logs, workspace, layer_lines
):
    (workspace / "f.txt").write_text("x")
    await Mcp(http=http).call("read_file", path="f.txt")
    lines = json_logs.lines()
    assert lines and all(list(line)[: len(FIELDS)] == list(FIELDS) for line in lines)
    for message in ("http request", "mcp request", "tool call"):
        line = next(line for line in lines if line["message"] == message)
        for name in FIELDS:
            assert line[name] is not None, (message, name, line)
        assert line["tenant"] != "dev" and len(line["tenant"]) == 16
        assert (line["mcp_method"], line["tool"], line["outcome"]) == ("tools/call", "read_file", "ok")
        assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16
    assert len({line["request_id"] for line in lines if line["message"] in ("http request", "tool call")}) == 1


async def test_attack_secrets_through_requests_at_debug_level(settings, tmp_path, json_logs, capfd, workspace):
    """Everything at DEBUG, from every logger and the runner: secrets sent in headers, tool
    arguments, paths and invalid params never appear in any line."""
    import httpx
    from mcp_api.app import create_app

    settings.log_level = "DEBUG"
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080", timeout=30) as http:
            mcp = Mcp(http=http)
            await mcp.call("write_file", path="notes.txt", content=f"password={PASSWORD}\n{ANTHROPIC}\n{JWT}")
            await mcp.call("read_file", path=f"{OPENAI}/../{GITHUB}")
            await mcp.call("grep", pattern=f"api_key: {OPENAI}", path=".")
            await mcp.request("tools/call", {"name": "read_file", "arguments": {"path": 5, "x": BEARER}}, name="read_file")
            await Mcp(http=http, key=API_KEY).post("tools/list")
            await http.post("/mcp", json={}, headers={"authorization": f"Bearer {JWT}", "content-type": "application/json"})
            await http.get("/diagnostics", headers={"authorization": f"Bearer {TEST_KEY}"})
    captured = capfd.readouterr()
    text = json_logs.text() + captured.out + captured.err
    assert "tool call" in text and "authentication failed" in text  # the logs did run at DEBUG
    for secret in [*SECRETS, TEST_KEY]:
        assert secret not in text, secret


def test_configure_logging_is_idempotent_and_rotates_files(tmp_path):
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        log_file = tmp_path / "logs" / "mcp-api.log"
        for _ in range(2):
            configure_logging("mcp-api", "INFO", "json", file=log_file, max_bytes=400, backups=2)
        ours = [h for h in root.handlers if getattr(h, "_secure_agent_handler", False)]
        assert len(ours) == 1
        for i in range(40):
            logging.getLogger("rotation").info("line %d with key %s", i, API_KEY)
        files = sorted(p.name for p in log_file.parent.iterdir())
        assert files == ["mcp-api.log", "mcp-api.log.1", "mcp-api.log.2"]
        text = "".join(p.read_text() for p in log_file.parent.iterdir())
        assert API_KEY not in text and all(json.loads(line) for line in text.splitlines())
        configure_logging("mcp-api", "INFO", "json", file=log_file, max_bytes=0)  # external logrotate
        assert type(next(h for h in root.handlers if getattr(h, "_secure_agent_handler", False))).__name__ == "WatchedFileHandler"
        # uvicorn's own handlers are replaced: its lines go through ours
        assert logging.getLogger("uvicorn.error").propagate and not logging.getLogger("uvicorn.error").handlers
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_secure_agent_handler", False)]:
            root.removeHandler(handler)
            handler.close()
        for handler in before[0]:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(before[1])


def test_setup_logging_and_gunicorn_config(settings):
    import logging.config

    handler = setup_logging(settings, stream=io.StringIO())
    assert isinstance(handler, logging.Handler)
    config = gunicorn_logconfig(settings)
    logging.config.dictConfig(config)  # the factory path resolves and builds the JSON handler
    assert config["handlers"]["json"]["()"].endswith("json_handler")
    setup_logging(settings)
