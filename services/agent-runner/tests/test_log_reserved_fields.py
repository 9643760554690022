"""The context fields (request_id, trace_id, span_id, tenant, mcp_method, tool) that a foreign record
sets as `extra`: they are not extra fields (the filter's walk skips them), and a secret passed in
one of them reached the line in clear. Through handlers built by `make_handler` (JSON and text, a
stream and a file), and through the JSON formatter alone (a handler built elsewhere)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from agent_runner.observability import context
from agent_runner.observability.logs import JsonFormatter, event, make_handler

RESERVED = ("request_id", "trace_id", "span_id", "tenant", "mcp_method", "tool")
REGISTERED = "registered-secret-0123456789"
SECRET, MARKER = "sk-" + "R" * 40, "R" * 40
MARKERS = (MARKER, REGISTERED)


pytestmark = pytest.mark.usefixtures("registered_secret")  # REGISTERED is the one secret (conftest.py)


def assert_clean(text: str) -> None:
    leaked = [marker for marker in MARKERS if marker in text]
    assert not leaked, (leaked, text)


def emit(fmt: str, tmp_path: Path, *, to_file: bool, log: callable) -> str:
    """What `log(logger)` writes through a `make_handler` handler."""
    stream = io.StringIO()
    path = tmp_path / f"{fmt}.log"
    handler = make_handler("test", fmt, file=path) if to_file else make_handler("test", fmt, stream=stream)
    logger = logging.Logger("httpx")  # a foreign logger, not registered: only our handler sees it
    logger.addHandler(handler)
    try:
        log(logger)
    finally:
        handler.close()
    return path.read_text("utf-8") if to_file else stream.getvalue()


@pytest.mark.parametrize("to_file", [False, True], ids=["stream", "file"])
@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize("name", RESERVED)
@pytest.mark.parametrize("secret", [SECRET, f"x {REGISTERED} y"], ids=["pattern", "registered"])
def test_secret_string_in_a_reserved_extra(name, fmt, to_file, secret, tmp_path):
    # text: only request_id and trace_id are in the format; the rest must not leak through it either.
    # (span_id without trace_id is replaced by the ambient ids: it is given with a clean trace_id.)
    extra = {name: secret} if name != "span_id" else {"trace_id": "0af7651916cd43dd8448eb211c80319c", name: secret}
    line = emit(fmt, tmp_path, to_file=to_file, log=lambda lg: lg.warning("hello", extra=extra))
    assert_clean(line)
    assert "hello" in line
    if fmt == "json":
        record = json.loads(line)
        assert "[REDACTED]" in record[name]


@pytest.mark.parametrize("name", RESERVED)
@pytest.mark.parametrize(
    "value",
    [[SECRET], {"k": SECRET}, {SECRET: 1}, (REGISTERED,), {SECRET}, SECRET.encode()],
    ids=["list", "dict", "key", "tuple", "set", "bytes"],
)
def test_secret_inside_a_non_string_reserved_extra(name, value, tmp_path):
    extra = {name: value} if name != "span_id" else {"trace_id": "0af7651916cd43dd8448eb211c80319c", name: value}
    line = emit("json", tmp_path, to_file=False, log=lambda lg: lg.warning("hello", extra=extra))
    assert_clean(line)
    json.loads(line)


def test_every_reserved_field_at_once_and_the_ambient_ones(tmp_path):
    extra = {name: f"{name} {SECRET}" for name in ("request_id", "trace_id", "span_id")}
    with context.bind(request_id="ambient-id", tenant="0123abcd", mcp_method="tools/call", tool=f"t {SECRET}"):
        line = emit("json", tmp_path, to_file=False, log=lambda lg: lg.info("x", extra=extra))
    assert_clean(line)
    record = json.loads(line)
    assert record["request_id"] == "request_id sk-[REDACTED]" and record["span_id"] == "span_id sk-[REDACTED]"
    assert record["tenant"] == "0123abcd" and record["mcp_method"] == "tools/call"  # ambient, as they were
    assert record["tool"] == "t sk-[REDACTED]"


def test_clean_reserved_extras_and_ambient_values_unchanged(tmp_path):
    extra = {"request_id": "req-1", "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
             "tenant": "4f2a9c", "mcp_method": "tools/call", "tool": "read_file"}  # fmt: skip
    line = emit("json", tmp_path, to_file=False, log=lambda lg: lg.info("x", extra=extra))
    record = json.loads(line)
    assert {name: record[name] for name in RESERVED} == extra
    with context.bind(request_id="ambient-1", tenant="feed", mcp_method="tools/list", tool="list_files"):
        record = json.loads(emit("json", tmp_path, to_file=False, log=lambda lg: lg.info("y")))
    assert (record["request_id"], record["tenant"], record["mcp_method"], record["tool"]) == (
        "ambient-1", "feed", "tools/list", "list_files")  # fmt: skip
    assert "_context_explicit" not in record


def test_event_records_keep_their_own_redaction(tmp_path):
    def log(logger: logging.Logger) -> None:
        event(logger, logging.INFO, "evt", request_id=SECRET, trace_id=[REGISTERED], tool=SECRET)

    line = emit("json", tmp_path, to_file=False, log=log)
    assert_clean(line)
    record = json.loads(line)
    assert record["request_id"] == "sk-[REDACTED]" and record["trace_id"] == ["[REDACTED]"]


@pytest.mark.parametrize("name", RESERVED)
def test_json_formatter_alone_redacts_reserved_extras(name):
    """A handler built elsewhere (no filters): the formatter scans the final fields, trace_id and
    span_id included (only `extra` can have set them there)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.Logger("foreign")
    logger.addHandler(handler)
    logger.warning("hello", extra={name: SECRET})
    assert_clean(stream.getvalue())
    assert json.loads(stream.getvalue())[name] == "sk-[REDACTED]"


def test_a_client_request_id_that_looks_like_a_secret_is_replaced():
    from agent_runner.observability import context

    assert context.accept_request_id("req-123.abc") == "req-123.abc"
    secret = "sk-" + "a1B2c3D4e5" * 4
    replaced = context.accept_request_id(secret)
    assert replaced != secret and "sk-" not in replaced and len(replaced) == 32
