"""event() writes its line itself when the record would reach only one JSON stream handler built by
make_handler (observability/log_direct.py): the same bytes as the logging path, which still serves
every other arrangement (another handler on the way, a filter, a file, the text format, a special
key); on stdout/stderr inside an event loop, at the end of the loop step, in order."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import threading

import pytest
from agent_runner.observability import context, log_direct, logs
from agent_runner.observability.logs import event, make_handler
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

REGISTERED = "registered-secret-0123456789"
NOW = 1_790_000_000.123456


pytestmark = pytest.mark.usefixtures("registered_secret")  # REGISTERED is the one secret (conftest.py)


@pytest.fixture(autouse=True)
def _fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # LogRecord reads time.time() (time.time_ns() on 3.13), the direct path time.time().
    monkeypatch.setattr("time.time", lambda: NOW)
    monkeypatch.setattr("time.time_ns", lambda: int(NOW * 1e9))


class _Pass(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return True


def pair(level: int = logging.DEBUG) -> tuple[logging.Logger, io.StringIO, logging.Logger, io.StringIO]:
    """Two unregistered loggers (no parent, so no test harness handler on the way) with a make_handler
    JSON handler each; the second has a pass-through filter, which keeps event() on the logging path."""
    out = []
    for name in ("direct", "logging"):
        stream = io.StringIO()
        logger = logging.Logger(f"test.{name}", level)
        logger.addHandler(make_handler("svc", "json", stream=stream))
        out += [logger, stream]
    out[2].addFilter(_Pass())
    return tuple(out)  # type: ignore[return-value]


def both(fields: dict, level: int = logging.INFO, message: str = "http request") -> tuple[str, str]:
    direct, direct_out, generic, generic_out = pair()
    assert log_direct.direct_handler(direct, level, dict(fields)) is direct.handlers[0]
    assert log_direct.direct_handler(generic, level, dict(fields)) is None
    event(direct, level, message, **fields)
    event(generic, level, message, **fields)
    # The logger's name is the one difference between the two arrangements.
    return direct_out.getvalue().replace("test.direct", "test.X"), generic_out.getvalue().replace("test.logging", "test.X")


ACCESS = {
    "http_method": "POST", "path": "/mcp", "status": 200, "duration_ms": 0.532, "outcome": "ok",
    "mcp_trace_id": None, "era": "modern", "protocol_version": "2026-07-28", "op": "files/read",
    "tool_outcome": "ok", "error_code": None, "tool_ms": 0.41,
}  # fmt: skip


def test_the_access_line_is_the_same_bytes():
    direct, generic = both(ACCESS)
    assert direct == generic
    line = json.loads(direct)
    assert list(line)[:13] == list(logs.FIELDS)
    assert line["timestamp"] == "2026-09-21T14:13:20.123Z" and line["service"] == "svc"


def test_inside_a_request_context_and_a_span():
    with context.bind(request_id="r" * 32, tenant="acme", mcp_method="tools/call", tool="read_file"):
        with trace.use_span(NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=False))):
            direct, generic = both(ACCESS)
    assert direct == generic
    line = json.loads(direct)
    assert line["request_id"] == "r" * 32 and line["tool"] == "read_file"
    assert line["tenant"] == "acme" and line["trace_id"] == f"{0xABC:032x}" and line["span_id"] == f"{0xDEF:016x}"


leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30),
    st.sampled_from([REGISTERED, f"key {REGISTERED} end", "sk-" + "Q" * 40, "Bearer abc.def.ghi", "ok"]),
)  # fmt: skip
value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
key = st.one_of(
    st.sampled_from([
        "status", "op", "duration_ms", "outcome", "request_id", "tenant", "mcp_method", "tool", "trace_id",
        "span_id", "error_code", "arguments", "password", "api_key", REGISTERED, "sk-" + "K" * 30,
    ]),
    st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(key, value, max_size=8), bound=st.booleans(), level=st.sampled_from([10, 20, 30, 40]))
def test_any_fields_give_the_same_bytes(fields, bound, level):
    fields = {k: v for k, v in fields.items() if k not in log_direct.NOT_DIRECT_KEYS and not k.startswith("_")}
    if bound:
        with context.bind(request_id="req-1", tenant="t", mcp_method="tools/call", tool=f"x {REGISTERED}"):
            direct, generic = both(fields, level)
    else:
        direct, generic = both(fields, level)
    assert direct == generic
    assert REGISTERED not in direct


def test_a_message_with_a_secret_is_redacted_alike():
    direct, generic = both({"op": "x"}, message=f"saw {REGISTERED}")
    assert direct == generic and REGISTERED not in direct


@pytest.mark.parametrize("name", ["name", "msg", "message", "service", "timestamp", "levelname", "_private"])
def test_keys_a_record_treats_specially_take_the_logging_path(name):
    direct, _, _, _ = pair()
    assert log_direct.direct_handler(direct, logging.INFO, {name: 1}) is None


def test_any_other_arrangement_takes_the_logging_path(tmp_path):
    direct, _, _, _ = pair()
    handler = direct.handlers[0]
    assert log_direct.direct_handler(direct, logging.INFO, {}) is handler
    handler.setLevel(logging.WARNING)  # the handler's level is still honoured
    assert log_direct.direct_handler(direct, logging.INFO, {}) is None
    handler.setLevel(logging.NOTSET)
    handler.addFilter(_Pass())
    assert log_direct.direct_handler(direct, logging.INFO, {}) is None
    handler.removeFilter(handler.filters[-1])
    handler.setFormatter(logs.JsonFormatter("other"))
    assert log_direct.direct_handler(direct, logging.INFO, {}) is None
    # A second handler anywhere on the way, the text format, a file: the logging path.
    two = logging.Logger("two")
    two.addHandler(make_handler("svc", "json", stream=io.StringIO()))
    two.addHandler(make_handler("svc", "json", stream=io.StringIO()))
    assert log_direct.direct_handler(two, logging.INFO, {}) is None
    text = logging.Logger("text")
    text.addHandler(make_handler("svc", "text", stream=io.StringIO()))
    assert log_direct.direct_handler(text, logging.INFO, {}) is None
    to_file = logging.Logger("file")
    to_file.addHandler(file_handler := make_handler("svc", "json", file=tmp_path / "x.log"))
    try:
        assert log_direct.direct_handler(to_file, logging.INFO, {}) is None
    finally:
        file_handler.close()


def test_a_test_harness_on_the_root_still_sees_every_line(caplog):
    stream = io.StringIO()
    handler = make_handler("svc", "json", stream=stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO):
            event(logging.getLogger("test.harnessed"), logging.INFO, "http request", status=200)
    finally:
        root.removeHandler(handler)
    assert [r.getMessage() for r in caplog.records if r.name == "test.harnessed"] == ["http request"]
    assert json.loads(stream.getvalue())["status"] == 200


def test_a_failing_stream_is_reported_not_raised(monkeypatch):
    direct, stream, _, _ = pair()
    stream.close()  # writing raises ValueError, as a closed stdout would
    reported = []
    monkeypatch.setattr(logging.Handler, "handleError", lambda self, record: reported.append(record.getMessage()))
    event(direct, logging.INFO, "http request", status=200)
    assert reported == ["http request"]


def test_the_kill_switch_takes_the_logging_path(monkeypatch):
    direct, _, _, _ = pair()
    monkeypatch.setattr(log_direct, "ENABLED", False)
    assert log_direct.direct_handler(direct, logging.INFO, {}) is None


@pytest.fixture
def stdout_logger(monkeypatch: pytest.MonkeyPatch):
    """`start()` gives a logger whose one handler writes to sys.stdout (StdStreamHandler), made a
    StringIO (inside the test: pytest sets sys.stdout again between a fixture and its test)."""
    logger = logging.Logger("test.stdout", logging.DEBUG)
    logger.addHandler(handler := make_handler("svc", "json"))
    assert type(handler) is logs.StdStreamHandler

    def start() -> tuple[logging.Logger, io.StringIO]:
        out = io.StringIO()
        monkeypatch.setattr(sys, "stdout", out)
        return logger, out

    yield start
    handler.close()


def test_on_stdout_in_a_loop_lines_wait_for_the_end_of_the_step_and_keep_their_order(stdout_logger):
    logger, out = stdout_logger()
    reference, reference_out, _, _ = pair()

    async def main() -> str:
        for i in range(3):
            with context.bind(request_id=f"req-{i}"):
                event(logger, logging.INFO, "http request", n=i, **ACCESS)
        waiting = out.getvalue()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return waiting

    assert asyncio.run(main()) == ""  # nothing written inside the step
    for i in range(3):
        with context.bind(request_id=f"req-{i}"):
            event(reference, logging.INFO, "http request", n=i, **ACCESS)
    # The same lines, with the context each had when it was logged, in order, after the step.
    assert out.getvalue().replace("test.stdout", "X") == reference_out.getvalue().replace("test.direct", "X")
    assert [json.loads(line)["request_id"] for line in out.getvalue().splitlines()] == ["req-0", "req-1", "req-2"]


def test_a_line_on_the_logging_path_writes_the_waiting_ones_first(stdout_logger):
    logger, out = stdout_logger()

    async def main() -> None:
        event(logger, logging.INFO, "first", n=1)
        logger.warning("second")  # the logging path, through the same handler
        event(logger, logging.INFO, "third", n=3)

    asyncio.run(main())
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == ["first", "second", "third"]


def test_closing_the_handler_or_exiting_writes_the_waiting_lines(stdout_logger):
    logger, out = stdout_logger()
    handler = logger.handlers[0]

    async def main() -> list[str]:
        seen = []
        event(logger, logging.INFO, "before exit", n=1)
        seen.append(out.getvalue())
        log_direct._flush_all()  # what atexit runs
        seen.append(out.getvalue())
        event(logger, logging.INFO, "before close", n=2)
        handler.close()
        seen.append(out.getvalue())
        return seen

    waiting, after_exit, after_close = asyncio.run(main())
    assert waiting == ""
    assert [json.loads(line)["message"] for line in after_exit.splitlines()] == ["before exit"]
    assert [json.loads(line)["message"] for line in after_close.splitlines()] == ["before exit", "before close"]
    assert out.getvalue() == after_close  # and the step's end finds nothing left to write


def test_outside_a_loop_or_in_another_thread_lines_are_written_at_once(stdout_logger):
    logger, out = stdout_logger()
    event(logger, logging.INFO, "no loop", n=1)
    assert "no loop" in out.getvalue()
    thread = threading.Thread(target=event, args=(logger, logging.INFO, "thread"), kwargs={"n": 2})
    thread.start()
    thread.join()
    assert "thread" in out.getvalue()


def test_a_forked_child_does_not_write_its_parents_waiting_lines(stdout_logger, monkeypatch):
    logger, out = stdout_logger()

    async def main() -> None:
        event(logger, logging.INFO, "parent's", n=1)
        monkeypatch.setattr(log_direct.os, "getpid", lambda: -1)  # now "in the child"
        log_direct.flush_deferred(logger.handlers[0])

    asyncio.run(main())
    assert out.getvalue() == ""


def test_a_long_step_writes_in_batches(stdout_logger, monkeypatch):
    logger, out = stdout_logger()
    monkeypatch.setattr(log_direct, "MAX_DEFERRED", 4)

    async def main() -> int:
        for i in range(10):
            event(logger, logging.INFO, "line", n=i)
        return len(out.getvalue().splitlines())

    assert asyncio.run(main()) == 8  # two full batches inside the step, the rest at its end
    assert len(out.getvalue().splitlines()) == 10
