"""JSON log lines (python-json-logger) shared by mcp-api and agent-runner, redaction included.

Every line is one JSON object with, in this order:

    timestamp level logger message service request_id trace_id span_id tenant mcp_method tool
    duration_ms outcome

(null when not known) followed by any extra fields of the call and `exc_info` for exceptions.
`tenant` is a hash (context.hash_tenant), never the name. Secrets are removed once per record:
`event()` redacts its structured fields as it builds the record (so a foreign handler, e.g. a test
harness's, never sees them in clear either) and marks the record; `RedactingFilter`, on every handler
`make_handler` builds, redacts the message, exception and stack text, the client-influenced context
fields and any extra field of records that did not come through `event()`; the JSON formatter scans
the final fields again only for records that did not pass that filter (a handler built elsewhere).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from opentelemetry import trace
from pythonjsonlogger.json import JsonEncoder as _BaseJsonEncoder
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from . import context, redaction
from .redaction import encodable, redact_fields, redact_key, redact_keys, redact_text, redact_value

LogFormat = Literal["json", "text"]
FIELDS = (
    "timestamp", "level", "logger", "message", "service", "request_id", "trace_id", "span_id",
    "tenant", "mcp_method", "tool", "duration_ms", "outcome",
)  # fmt: skip
_CONTEXT_FIELDS = ("request_id", "tenant", "mcp_method", "tool")
# Fields the context filter fills (`extra` may set them): not extra fields, redacted apart.
_RESERVED_FIELDS = ("request_id", "trace_id", "span_id", "tenant", "mcp_method", "tool")
# LogRecord attributes that are not user fields.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))
) | {"message", "asctime", "taskName", "service", "trace_id", "span_id", *_CONTEXT_FIELDS}
_MARK = "_secure_agent_handler"
DIRECT_FORMATTER = "_secure_agent_direct_formatter"
# Set by event() on records whose extra fields it already redacted.
_FIELDS_REDACTED = "_fields_redacted"
_FILTERED_KEY = "\x00redacted"
# Set by ContextFilter: whether the record came with any of its fields set (True when it did not run).
_CONTEXT_EXPLICIT = "_context_explicit"


_TRAILING_FIELDS = FIELDS[5:]
_last_second: tuple[tuple[int, ...], str] = ((), "")


def _timestamp(created: float) -> str:
    """`2026-01-01T00:00:00.123Z`: `isoformat(timespec="milliseconds")` of the UTC time with "Z" for
    "+00:00", its date and time of day formatted once per second."""
    global _last_second
    moment = datetime.fromtimestamp(created, UTC)
    second = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    cached_second, prefix = _last_second
    if cached_second != second:
        prefix = moment.isoformat(timespec="seconds")[:-6]  # without "+00:00"
        _last_second = (second, prefix)
    return f"{prefix}.{moment.microsecond // 1000:03d}Z"


def trace_ids() -> tuple[str | None, str | None]:
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None, None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


class ContextFilter(logging.Filter):
    """Stamp each record with the request's log context and the current trace and span ids.

    Values passed explicitly (`extra={"trace_id": ...}`) win over the ambient ones.
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        fields["service"] = self.service
        ctx = context.current()
        explicit = False
        for name in _CONTEXT_FIELDS:
            if fields.get(name) is None:
                fields[name] = getattr(ctx, name) if ctx else None
            else:
                explicit = True
        if fields.get("trace_id") is None:
            fields["trace_id"], fields["span_id"] = trace_ids()
        else:
            explicit = True
        fields[_CONTEXT_EXPLICIT] = explicit  # for RedactingFilter: were any of them given as `extra`?
        return True


class RedactingFilter(logging.Filter):
    """Render the message and remove secrets from it, its extra fields and its exception text.

    Runs on the handler, so it sees records of every logger (ours, uvicorn's, the SDK's, httpx's).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line  # noqa: BLE001
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        record.exc_info = None
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        # The context fields are not extra fields (the loop below skips them), but a foreign record
        # can set any of them (`extra={"request_id": ...}`; event() redacts its own): then all are
        # redacted, strings as text and anything else as a field. The tool name comes from the
        # client's request: it is redacted on every record.
        fields = vars(record)
        foreign = not fields.get(_FIELDS_REDACTED, False)
        for name in _RESERVED_FIELDS if foreign and fields.get(_CONTEXT_EXPLICIT, True) else ("tool",):
            value = fields.get(name)
            if isinstance(value, str):
                fields[name] = redact_text(value)
            elif value is not None and foreign:
                fields[name] = redact_value(value, name)
        if foreign:
            for key, value in list(fields.items()):
                if key not in _RECORD_ATTRS and not key.startswith("_"):
                    fields[key] = redact_value(value, key)
                    name = redact_key(key)  # an extra field's name can be a secret too
                    if name != key:
                        fields[redaction.free_key(name, fields)] = fields.pop(key)
        record._redacted = True
        return True


class RedactingJsonEncoder(_BaseJsonEncoder):
    """For an object JSON does not know, writes what python-json-logger's encoder would, redacted
    (fields are redacted before they reach the encoder; this covers any that were not, e.g. an
    object passed as `extra={"trace_id": ...}`)."""

    def default(self, o: Any) -> Any:
        return encodable(o)


class JsonFormatter(_BaseJsonFormatter):
    def __init__(self, service: str = "secure-agent") -> None:
        super().__init__(
            reserved_attrs=list(_RECORD_ATTRS | {"_redacted", _FIELDS_REDACTED, _CONTEXT_EXPLICIT}),
            json_encoder=RedactingJsonEncoder,
        )
        self.service = service
        # Attributes that are not extra fields: reserved ones and the fixed fields placed first.
        self._not_extra = frozenset(self._skip_fields | set(FIELDS))
        # One encoder for every line: what json.dumps(cls=..., ensure_ascii=...) builds on each call.
        self._encoder = self.json_encoder(ensure_ascii=self.json_ensure_ascii, indent=self.json_indent,
                                          default=self.json_default)  # fmt: skip

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict) -> None:
        log_data["timestamp"] = _timestamp(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.getMessage()
        log_data["service"] = getattr(record, "service", None) or self.service
        for name in _TRAILING_FIELDS:
            log_data[name] = getattr(record, name, None)
        not_extra = self._not_extra
        for key, value in vars(record).items():
            if key not in not_extra and not key.startswith("_"):
                log_data[key] = value
        for key, value in message_dict.items():
            log_data.setdefault(key, value)
        if getattr(record, "_redacted", False):
            log_data[_FILTERED_KEY] = True  # removed again by process_log_record

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        if self.json_serializer is not json.dumps:
            return super().jsonify_log_record(log_data)
        return self._encoder.encode(log_data)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        if log_data.pop(_FILTERED_KEY, False):
            # RedactingFilter already redacted every field of this record, once.
            return log_data
        # A record that did not pass the filter (a handler built elsewhere): scan the final fields.
        # (trace_id and span_id too: here only `extra` can have set them.)
        return redact_fields(log_data, skip=("timestamp", "level", "logger", "service"))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s trace=%(trace_id)s] %(message)s"
        )

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class StdStreamHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout / sys.stderr is at the time of the write (test harnesses and
    daemonizers swap them), never to a stream object that was closed since."""

    def __init__(self, name: str = "stdout") -> None:
        self._std_name = name
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return getattr(sys, self._std_name)

    @stream.setter
    def stream(self, value: IO[str]) -> None:  # StreamHandler.__init__ assigns it; ignored
        pass

    def emit(self, record: logging.LogRecord) -> None:
        log_direct.flush_deferred(self)  # event()'s lines still waiting for the loop step to end go first
        super().emit(record)

    def close(self) -> None:
        log_direct.flush_deferred(self)
        super().close()


class RotatingFileHandler(logging.handlers.RotatingFileHandler):
    """The stdlib's, formatting each record once: it formats it to decide whether to roll over, and
    again to write it."""

    _emitting: logging.LogRecord | None = None
    _formatted: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self._emitting, self._formatted = record, None  # under the handler's lock
        try:
            super().emit(record)
        finally:
            self._emitting = self._formatted = None

    def format(self, record: logging.LogRecord) -> str:
        if record is not self._emitting:
            return super().format(record)
        if self._formatted is None:
            self._formatted = super().format(record)
        return self._formatted


def make_handler(
    service: str,
    fmt: LogFormat = "json",
    *,
    stream: IO[str] | None = None,
    file: str | os.PathLike[str] | None = None,
    max_bytes: int = 50 * 1024 * 1024,
    backups: int = 5,
) -> logging.Handler:
    """A handler with the context and redaction filters and the chosen format.

    `file` with `max_bytes > 0` rotates by size (one process); `max_bytes == 0` reopens the file
    when an external logrotate moves it (safe with several gunicorn workers).
    """
    handler: logging.Handler
    if file is not None:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        if max_bytes > 0:
            handler = RotatingFileHandler(file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        else:
            handler = logging.handlers.WatchedFileHandler(file, encoding="utf-8")
    elif stream is None or stream is sys.stdout or stream is sys.stderr:
        handler = StdStreamHandler("stderr" if stream is sys.stderr else "stdout")
    else:
        handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter(service))
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter())
    if fmt == "json" and type(handler) in (StdStreamHandler, logging.StreamHandler):
        setattr(handler, DIRECT_FORMATTER, handler.formatter)  # event() may write its lines (log_direct)
    setattr(handler, _MARK, True)
    return handler


def json_handler(service: str = "mcp-api", stream: str = "stdout") -> logging.Handler:
    """Factory for logging.config dicts (gunicorn's logconfig_dict): `{"()": "...json_handler"}`."""
    return make_handler(service, "json", stream=sys.stderr if stream == "stderr" else None)


# Loggers of servers we embed: their own handlers are dropped and they propagate to the root.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "gunicorn.error")


def configure_logging(
    service: str,
    level: str | int = "INFO",
    fmt: LogFormat = "json",
    *,
    stream: IO[str] | None = None,
    file: str | os.PathLike[str] | None = None,
    max_bytes: int = 50 * 1024 * 1024,
    backups: int = 5,
    access_log: bool = False,
) -> logging.Handler:
    """Route every logger of the process through one redacting handler on the root. Idempotent:
    handlers installed by an earlier call are replaced, foreign ones (pytest's) are kept."""
    root = logging.getLogger()
    # Ours from an earlier call, and plain ones a library's basicConfig added (the mcp SDK's
    # MCPServer adds a "%(message)s" handler to a bare root); test harnesses' handlers stay.
    for old in [h for h in root.handlers if getattr(h, _MARK, False) or _is_default_handler(h)]:
        root.removeHandler(old)
        if getattr(old, _MARK, False):
            old.close()
    handler = make_handler(service, fmt, stream=stream, file=file, max_bytes=max_bytes, backups=backups)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    for name in SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
        server_logger.setLevel(logging.NOTSET)
    # Our own access line replaces uvicorn's (it carries the request id, tenant hash and trace id).
    logging.getLogger("uvicorn.access").disabled = not access_log
    # Connection-level chatter stays out of DEBUG logs unless asked for by name.
    for noisy in ("httpcore", "hpack", "multipart", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    # Lines per request that repeat what the access and "mcp request" lines say: DEBUG only.
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING)
    return handler


CHATTY_LOGGERS = ("httpx", "mcp.server.streamable_http", "mcp.server.streamable_http_manager")


def _is_default_handler(handler: logging.Handler) -> bool:
    return type(handler) is logging.StreamHandler or type(handler).__name__ == "RichHandler"


def event(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log `message` with structured fields (redacted like everything else)."""
    if logger.isEnabledFor(level):
        extra = {k: redact_value(v, k) for k, v in fields.items()}
        if not redaction._clean_keys.issuperset(fields):  # a field name that is (or holds) a secret
            extra = redact_keys(extra)
        handler = log_direct.direct_handler(logger, level, extra)
        if handler is not None:
            log_direct.write(handler, logger.name, level, message, extra)
            return
        extra[_FIELDS_REDACTED] = True
        logger.log(level, message, extra=extra, stacklevel=2)


# After every name above: log_direct reads them at import.
from . import log_direct  # noqa: E402
