"""event()'s lines written without the logging machinery, when nothing else could see them.

When a record of event() would reach exactly one handler and it is a plain JSON stream handler that
`make_handler` built (its two filters and its formatter untouched), event() builds the fields the
filters and the formatter would, in their order, and writes them as StreamHandler.emit does: the same
bytes, without the LogRecord, the caller lookup, the two filters and the formatter's generic walk.
Anything else takes the logging path: another handler anywhere on the way to the root (a test
harness's, a second sink), a logger filter, a file handler, the text format, a replaced formatter,
or an extra key a LogRecord treats specially. tests/test_log_direct.py holds both paths to the same
bytes. Why: the access line was a sixth of mcp-api's CPU per read_file (docs/performance.md).

On stdout or stderr (`StdStreamHandler`), a line built on a running event loop is encoded and
written when the loop's current step is over, with the other lines of that step: one write, and the
encoder's code stays hot across them. Its fields (time, request context, trace ids) are taken when it
is logged. A line that takes the logging path through the same handler first writes the waiting ones,
so the order of lines is kept; closing the handler and the end of the process write them too. What
is lost if the process is killed: the lines of the step it was killed in.

`SECURE_AGENT_LOG_DIRECT=0` turns all of this off (every line takes the logging path).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time
import weakref
from typing import Any

from .context import current as current_context
from .logs import (
    _CONTEXT_FIELDS,
    _RECORD_ATTRS,
    _RESERVED_FIELDS,
    DIRECT_FORMATTER,
    FIELDS,
    ContextFilter,
    JsonFormatter,
    RedactingFilter,
    StdStreamHandler,
    _timestamp,
    trace_ids,
)
from .redaction import redact_text

ENABLED = os.environ.get("SECURE_AGENT_LOG_DIRECT", "1") != "0"
# Lines of one loop step written together at most: a step that logs more writes them in batches.
MAX_DEFERRED = 256
_HANDLER_TYPES = (StdStreamHandler, logging.StreamHandler)
# Keys that makeRecord refuses, that the filters or formatter replace, or that are not extra fields.
NOT_DIRECT_KEYS = (_RECORD_ATTRS | set(FIELDS[:5])) - set(_RESERVED_FIELDS)
_FIELDS = frozenset(FIELDS)


def direct_handler(logger: logging.Logger, level: int, extra: dict[str, Any]) -> logging.StreamHandler | None:
    """The handler event() may write this record's line to itself, or None for the logging path."""
    if not ENABLED:
        return None
    found = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        if current.handlers:
            if found is not None or len(current.handlers) != 1:
                return None
            found = current.handlers[0]
        if not current.propagate:
            break
        current = current.parent
    if (
        found is None
        or type(found) not in _HANDLER_TYPES
        or level < found.level
        or found.formatter is None
        or found.formatter is not getattr(found, DIRECT_FORMATTER, None)
        or len(found.filters) != 2
        or type(found.filters[0]) is not ContextFilter
        or type(found.filters[1]) is not RedactingFilter
    ):
        return None
    for key in extra:
        if key in NOT_DIRECT_KEYS or key[:1] == "_":
            return None
    return found  # type: ignore[return-value]


def write(handler: logging.StreamHandler, name: str, level: int, message: str, extra: dict[str, Any]) -> None:
    data = line_fields(handler, name, level, message, extra)
    if type(handler) is StdStreamHandler and _defer(handler, data):
        return
    emit(handler, [data])


def line_fields(
    handler: logging.StreamHandler, name: str, level: int, message: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """The line's fields in order: what ContextFilter and RedactingFilter set, then add_fields'
    layout (fixed fields, context fields, extra fields in the order given)."""
    ctx = current_context()
    data: dict[str, Any] = {
        "timestamp": _timestamp(time.time()),
        "level": logging.getLevelName(level),
        "logger": name,
        "message": redact_text(message),
        "service": handler.filters[0].service,  # type: ignore[attr-defined]
    }
    get = extra.get
    value = get("request_id")
    data["request_id"] = value if value is not None else ctx.request_id if ctx else None
    trace_id = get("trace_id")
    if trace_id is None:
        data["trace_id"], data["span_id"] = trace_ids()
    else:
        data["trace_id"], data["span_id"] = trace_id, get("span_id")
    for field in _CONTEXT_FIELDS[1:]:
        value = get(field)
        data[field] = value if value is not None else getattr(ctx, field) if ctx else None
    if isinstance(data["tool"], str):
        data["tool"] = redact_text(data["tool"])  # client-influenced: RedactingFilter's rule
    data["duration_ms"] = get("duration_ms")
    data["outcome"] = get("outcome")
    for key, value in extra.items():
        if key not in _FIELDS:
            data[key] = value
    return data


def emit(handler: logging.StreamHandler, lines: list[dict[str, Any]]) -> None:
    """The formatter's encoding of each line, written with one write and one flush."""
    formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
    terminator = handler.terminator
    try:
        text = "".join([formatter.serialize_log_record(data) + terminator for data in lines])
        with handler.lock:  # type: ignore[union-attr]
            handler.stream.write(text)
            handler.flush()
    except RecursionError:
        raise
    except Exception:  # noqa: BLE001 - as StreamHandler.emit: reported on stderr, never raised
        for data in lines:
            handler.handleError(logging.makeLogRecord({"name": data["logger"], "msg": data["message"]}))


class _Deferred:
    __slots__ = ("lines", "loop", "pid")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lines: list[dict[str, Any]] = []
        self.loop = loop
        self.pid = os.getpid()


_deferred: weakref.WeakKeyDictionary[logging.Handler, _Deferred] = weakref.WeakKeyDictionary()


def _defer(handler: logging.StreamHandler, data: dict[str, Any]) -> bool:
    """Queue the line for the end of this loop step; False outside a running loop (written now)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    with handler.lock:  # type: ignore[union-attr]
        waiting = _deferred.get(handler)
        if waiting is None or waiting.loop is not loop or waiting.pid != os.getpid():
            flush_deferred(handler)  # another loop's (or a parent process's) lines: theirs first
            waiting = _deferred[handler] = _Deferred(loop)
        if not waiting.lines:
            loop.call_soon(flush_deferred, handler)
        waiting.lines.append(data)
        if len(waiting.lines) >= MAX_DEFERRED:
            flush_deferred(handler)
    return True


def flush_deferred(handler: logging.Handler) -> None:
    """Write the handler's waiting lines now (a forked child drops its parent's: the parent writes them)."""
    waiting = _deferred.get(handler)
    if waiting is None or not waiting.lines:
        return
    with handler.lock:  # type: ignore[union-attr]
        lines, waiting.lines = waiting.lines, []
        if lines and waiting.pid == os.getpid():
            emit(handler, lines)  # type: ignore[arg-type]


@atexit.register
def _flush_all() -> None:
    for handler in list(_deferred.keys()):
        flush_deferred(handler)
