"""The cheap paths of a log line (redaction's literal pre-checks and key cache, the formatter's cached
timestamp, encoder and extra-field selection, the rotating handler's single format) write exactly what
the plain implementations below write, and never let a secret through that those would have caught."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import enum
import io
import json
import logging
import logging.handlers
import math
from collections.abc import Mapping
from typing import Any

import pytest
from agent_runner.observability import context, logs, redaction
from agent_runner.observability.logs import FIELDS, JsonFormatter, event, make_handler
from agent_runner.observability.redaction import REDACTED, redact_text, redact_value
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pythonjsonlogger.json import JsonEncoder

# ---------------------------------------------------------------------------------------------------
# Reference implementations: every pattern on every string, the key regex on every key, every key
# through the patterns (the code before the fast paths, minus its own short-token shortcut). The
# reference walk is the previous one with its three leaks closed the plain way (see
# test_redaction_leaks.py): strings and bytes are redacted at any depth and only containers deeper
# than the limit become REDACTED (sets and dataclasses too); dict keys are redacted like text (a
# changed key that is taken becomes `key#2`, `key#3`, …); an object JSON does not know becomes what
# python-json-logger's encoder `default` makes of it, walked and redacted (bytes and bytearrays are
# decoded, as before, rather than base64-encoded).


def ref_redact_text(text: str) -> str:
    if not text:
        return text
    registered = redaction._registered_re
    if registered is not None:
        text = registered.sub(REDACTED, text)
    for pattern, replacement in redaction._PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def ref_free_key(name: str, taken: Mapping[str, Any]) -> str:
    n, candidate = 1, name
    while candidate in taken:
        n += 1
        candidate = f"{name}#{n}"
    return candidate


def ref_redact_value(value: Any, key: str | None = None, _depth: int = 0) -> Any:
    if key is not None:
        if key in redaction.ARGUMENT_FIELDS:
            return ref_summarize_arguments(value)
        if redaction.SECRET_KEY_RE.search(key) and value not in (None, "") and not isinstance(value, bool | int | float):
            return REDACTED
    if isinstance(value, str):
        return ref_redact_text(value)
    if isinstance(value, bytes | bytearray):
        return ref_redact_text(value.decode("utf-8", "replace"))
    if value is None or isinstance(value, bool | int | float | dt.date | dt.time):
        return value
    is_dataclass = dataclasses.is_dataclass(value) and not isinstance(value, type)
    if _depth > 8 and (isinstance(value, Mapping | list | tuple | set | frozenset) or is_dataclass):
        return REDACTED
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            name = ref_redact_text(str(k))
            if name != str(k):
                name = ref_free_key(name, out)
            out[name] = ref_redact_value(v, name, _depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [ref_redact_value(v, None, _depth + 1) for v in value]
    if is_dataclass:  # the encoder's dataclasses.asdict, without its deep copy (which reorders sets)
        return ref_redact_value({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, None, _depth)
    return ref_redact_value(JsonEncoder().default(value), None, _depth)


def ref_summarize_arguments(arguments: Any) -> Any:
    if isinstance(arguments, redaction.ArgumentSummary):
        return arguments
    if isinstance(arguments, Mapping):
        out: dict[str, Any] = {}
        for k, v in arguments.items():
            name = ref_redact_text(str(k))
            out[name if name == str(k) else ref_free_key(name, out)] = redaction._shape(v)
        return out
    return {"value": redaction._shape(arguments)}


def ref_timestamp(created: float) -> str:
    return dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RefJsonFormatter(JsonFormatter):
    """The formatter as it was: fields picked with getattr and a scan of `log_data`, json.dumps."""

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict) -> None:
        log_data["timestamp"] = ref_timestamp(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.getMessage()
        log_data["service"] = getattr(record, "service", None) or self.service
        for name in FIELDS[5:]:
            log_data[name] = getattr(record, name, None)
        for key, value in vars(record).items():
            if key not in self._skip_fields and not key.startswith("_") and key not in log_data:
                log_data[key] = value
        for key, value in message_dict.items():
            log_data.setdefault(key, value)
        if getattr(record, "_redacted", False):
            log_data[logs._FILTERED_KEY] = True

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        return json.dumps(log_data, default=self.json_default, cls=self.json_encoder, indent=self.json_indent,
                          ensure_ascii=self.json_ensure_ascii)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Strings made of secret shapes, the literals the pre-checks look for (in any case), near-misses,
# non-ASCII look-alikes that IGNORECASE matches ("ı" ~ "i", "ſ" ~ "s", Kelvin "K" ~ "k") and noise.

SHAPES = [
    "sa_AbCdEfGhIjKl_Zz9-_Zz9", "sk-ant-api03-A1b2C3d4E5", "sk-proj-q8W7e6R5t4Y3q8W7", "AIza" + "x" * 32,
    "ghp_" + "x" * 24, "github_pat_" + "y" * 22, "gho_" + "z" * 20, "xoxb-1234567890-abc", "AKIAIOSFODNN7EXAMPLE",
    "ASIA" + "Q" * 16, "glpat-" + "a" * 20, "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0", "https://app:hunter2@db:5432/x",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----abc",
    "Authorization: Bearer abc.def", "proxy-authorization=Basic dXNlcg==", "{'authorization': 'Token x1'}",
    '\\"Authorization\\": \\"Bearer q\\"', "bearer abcd1234", "password=hunter2", 'api_key: "v a l"',
    "client-secret='s3'", "credentials:xyz", "access_key = AK", "private_key=[x]", "pwd:p", "passphrase=\"\"",
    "token=[REDACTED]", "x_token: {y}", "apikey=&", "secret: \\'q\\'", "input_tokens=42",
]  # fmt: skip
LITERALS = sorted(
    {lit for literals, _ in redaction._LITERALS for lit in literals} | {"proxy-", "api_key", "api-key", "access-key"}
)
LOOKALIKES = ["authorızation", "bearer".replace("e", "E"), "paſsword", "toKen", "tıken", "ſecret", "İ", "ß", "µ"]
NOISE = st.text(alphabet=st.sampled_from(list(" \t\n:=@/\\'\"{}[],;&.-_+aZ09xyéı€")), max_size=12)


def _cased(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flags: "".join(c.swapcase() if flip else c for c, flip in zip(word, flags, strict=True))
    )


FRAGMENT = st.one_of(
    st.sampled_from(SHAPES),
    st.sampled_from(LITERALS).flatmap(_cased),
    st.sampled_from(LOOKALIKES),
    NOISE,
    st.text(max_size=8),
)
TEXT = st.lists(FRAGMENT, max_size=8).map("".join)


@pytest.fixture(autouse=True)
def _registered():
    redaction.forget_secrets()
    redaction.register_secret("hunter22", "collector-credential-é")
    yield
    redaction.forget_secrets()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(TEXT)
@example("Authorızation: Bearer opaque-token-value")
@example("paſsword=hunter2 and toKen=x")
@example("key hunter22 in a url https://u:hunter22@h")
@example("xhunter22y")
def test_redact_text_is_the_full_scan(text: str) -> None:
    assert redact_text(text) == ref_redact_text(text)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(TEXT)
def test_no_pattern_matches_ascii_text_without_one_of_its_literals(text: str) -> None:
    if not text.isascii():
        return
    for pattern, _, literals, cased in redaction._SCANS:
        haystack = text if cased else text.lower()
        if pattern.search(text):
            assert any(literal in haystack for literal in literals), (pattern.pattern, text)


KEYS = st.one_of(
    st.sampled_from(["token", "password", "Authorization", "cookie", "input_tokens", "arguments", "body", "path",
                     "status", "api-key", "x_secret", "detail", "headers", "tool_ms", "signature"]),  # fmt: skip
    st.text(max_size=10),
    st.sampled_from(SHAPES),  # a secret as a key
    st.sampled_from(["hunter22", "sk-" + "k" * 20, "token=abc"]),
)


@dataclasses.dataclass
class Point:
    x: Any
    label: Any


class Color(enum.Enum):
    RED = "red"
    KEY = "sk-" + "e" * 20
    PAIR = ("x", "token=sk-" + "e" * 20)


class Shown:
    """An object JSON does not know, its str() carrying a secret."""

    def __str__(self) -> str:
        return "Shown(password=hunter22, key=sk-" + "s" * 20 + ")"


OBJECTS = st.sampled_from([
    ValueError("token=sk-" + "g" * 20), RuntimeError("Authorization: Bearer abcdefgh"), Color.RED, Color.KEY,
    Color.PAIR, Color, Shown(), ValueError, dt.date(2026, 1, 2), dt.time(3, 4), bytearray(b"password=hunter2"),
])  # fmt: skip
LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT, TEXT.map(lambda t: t.encode("utf-8", "replace")),
    OBJECTS, st.frozensets(TEXT, max_size=3),
)  # fmt: skip
VALUE = st.recursive(
    LEAF,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(KEYS, children, max_size=4),
        st.builds(lambda x, label: Point(x, label), children, children),
    ),
    max_leaves=20,
)


SHELLS = {"list": lambda v: [v], "tuple": lambda v: (v,), "dict": lambda v: {"k": v}, "point": lambda v: Point(0, v),
          "set": lambda v: frozenset([v]) if isinstance(v, str | frozenset) else [v]}  # fmt: skip


def _nest(value: Any, shells: list[str]) -> Any:
    for shell in shells:
        value = SHELLS[shell](value)
    return value


# A value wrapped in up to 12 containers: across the depth limit.
DEEP = st.builds(_nest, st.one_of(TEXT, VALUE), st.lists(st.sampled_from(sorted(SHELLS)), max_size=12))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(VALUE, DEEP), st.one_of(st.none(), KEYS))
def test_redact_value_is_the_plain_walk(value: Any, key: str | None) -> None:
    assert redact_value(value, key) == ref_redact_value(value, key)


def test_redact_value_corner_cases_match_the_plain_walk() -> None:
    class Label(str):
        pass

    deep: Any = "sk-" + "d" * 30
    for _ in range(12):
        deep = [deep, {"token": "t", "n": 1}]
    cases = [
        (Label("Authorization: Bearer abcdefgh"), None), (Label("ok"), "status"), (True, "token"), (0, "password"),
        (2.5, "secret"), ("", "token"), (None, "token"), ({"x"}, "token"), (frozenset({"pwd=x"}), None),
        (b"password=hunter2", "detail"), (deep, "deep"), ({1: "a", None: "sk-" + "e" * 20}, None),
        ({"arguments": {"content": "sk-" + "f" * 20}}, None), (5, "arguments"), (Label("x"), Label("token")),
    ]  # fmt: skip
    for value, key in cases:
        assert redact_value(value, key) == ref_redact_value(value, key), (value, key)


def test_the_key_cache_is_bounded_and_agrees_with_the_regex(monkeypatch) -> None:
    monkeypatch.setattr(redaction, "_key_kinds", {})
    monkeypatch.setattr(redaction, "_KEY_KINDS_MAX", 4)
    names = ["token", "status", "arguments", "my_password", "tool_ms", "api_key", "signature", "sig"] * 2
    for name in names:
        assert redact_value("v", name) == ref_redact_value("v", name), name
    assert len(redaction._key_kinds) == 4


def test_registered_values_are_replaced_in_short_tokens_and_only_when_long_enough() -> None:
    assert redact_text("xhunter22y") == f"x{REDACTED}y"  # a 10-character safe token
    assert redact_text("hunter2") == "hunter2"  # shorter than any registered value
    assert redact_text("a collector-credential-é b") == f"a {REDACTED} b"
    redaction.register_secret("short")  # too short to register
    assert redact_text("a short word") == "a short word"


# ---------------------------------------------------------------------------------------------------
# Whole lines: the same bytes as the reference formatter, and no secret through the fast paths.


def _record(msg: Any = "m", args: Any = None, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("x.y", logging.WARNING, __file__, 7, msg, args, None)
    record.__dict__.update(extra)
    return record


EXTRA_VALUES = st.one_of(
    VALUE,
    st.sampled_from([dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC), dt.date(2026, 1, 2),
                     ValueError("token=sk-" + "g" * 20), Point(1, "é"), b"\xff\xfe", float("inf"), object]),  # fmt: skip
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(st.sampled_from(["detail", "token", "status", "_private", "service", "trace_id", "tool",
                                     "outcome", "duration_ms", "path", "é", "message_x", "arguments"]),  # fmt: skip
                    EXTRA_VALUES, max_size=6),
    st.one_of(TEXT, st.just({"dict": "message", "api_key": "k"}), st.integers()),
    st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False),
)
def test_a_line_is_the_reference_line(extra: dict[str, Any], msg: Any, created: float) -> None:
    """With and without the redacting filter: same keys, order and bytes as the reference formatter."""
    new, ref = JsonFormatter("mcp-api"), RefJsonFormatter("mcp-api")
    record = _record(msg, **extra)
    record.created = created
    assert new.format(copy.copy(record)) == ref.format(copy.copy(record))
    filtered = copy.copy(record)
    logs.ContextFilter("mcp-api").filter(filtered)
    logs.RedactingFilter().filter(filtered)
    assert new.format(copy.copy(filtered)) == ref.format(copy.copy(filtered))


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
@example(1767225600.9999995)
@example(1767225600.9995)
@example(1767225599.99999999)
@example(0.0)
@example(1767225600.0005)
def test_timestamp_is_isoformat_milliseconds(created: float) -> None:
    assert logs._timestamp(created) == ref_timestamp(created)
    # and again, from the cached second (a value just before and just after it, too)
    for value in (created, math.nextafter(created, 0), math.nextafter(created, math.inf), created):
        assert logs._timestamp(value) == ref_timestamp(value)


def test_event_fast_paths_still_redact_nested_values_exceptions_and_foreign_extras(tmp_path) -> None:
    secret, key = "sk-" + "h" * 40, "sa_AbCdEfGhIjKl_" + "Q" * 24
    stream = io.StringIO()
    logger = logging.getLogger("test.fast_paths")
    logger.handlers = [make_handler("mcp-api", "json", stream=stream), make_handler("mcp-api", "json", file=tmp_path / "l.log")]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        with context.bind(request_id="r1", tool=f"t {secret}"):
            event(logger, logging.INFO, f"http request {key}", status=200, duration_ms=1.5, ok=True, none=None,
                  nested={"a": [{"b": f"x {secret}"}], "Authorization": "Basic abc"}, tup=(f"token={secret}",),
                  blob=f"password={secret}".encode(), registered="xhunter22y", short="ok")  # fmt: skip
            try:
                raise RuntimeError(f"rejected Authorization: Bearer {secret}")
            except RuntimeError:
                logger.exception("failed %s", key, extra={"note": {"deep": [secret]}, "password": "pw"})
            logger.info("stack", stack_info=True, extra={"detail": f"api_key={secret}"})
    finally:
        for handler in logger.handlers:
            handler.close()
        logger.handlers = []
    for text in (stream.getvalue(), (tmp_path / "l.log").read_text()):
        assert secret not in text and "QQQQ" not in text and "hunter22" not in text
        first, second, third = (json.loads(line) for line in text.splitlines())
        assert first["nested"] == {"a": [{"b": "x sk-[REDACTED]"}], "Authorization": REDACTED}
        assert (first["status"], first["ok"], first["none"], first["short"]) == (200, True, None, "ok")
        assert first["tool"] == "t sk-[REDACTED]" and first["registered"] == f"x{REDACTED}y"
        assert second["note"] == {"deep": ["sk-[REDACTED]"]} and second["password"] == REDACTED
        assert "RuntimeError: rejected Authorization: [REDACTED]" in second["exc_info"]
        assert third["detail"] == ref_redact_text(f"api_key={secret}") and "Stack (most recent call last)" in third["stack_info"]


def test_rotating_handler_formats_each_record_once_and_still_rotates(tmp_path, monkeypatch) -> None:
    calls: list[str] = []
    real = JsonFormatter.format

    def counting(self, record):  # noqa: ANN001, ANN202
        calls.append(record.getMessage())
        return real(self, record)

    monkeypatch.setattr(JsonFormatter, "format", counting)
    handler = make_handler("mcp-api", "json", file=tmp_path / "a.log", max_bytes=300, backups=1)
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    logger = logging.Logger("test.rotate")
    logger.addHandler(handler)
    try:
        for i in range(6):
            logger.warning("line %d", i)
        handler.format(logger.makeRecord("x", logging.INFO, "f", 1, "outside emit", None, None))
    finally:
        handler.close()
    assert calls == [f"line {i}" for i in range(6)] + ["outside emit"]
    lines = [json.loads(line) for p in sorted(tmp_path.iterdir()) for line in p.read_text().splitlines()]
    assert (tmp_path / "a.log.1").exists() and {line["message"] for line in lines} <= {f"line {i}" for i in range(6)}
    assert any(line["message"] == "line 5" for line in lines)


def test_a_custom_serializer_is_still_used() -> None:
    formatter = JsonFormatter("mcp-api")
    formatter.json_serializer = lambda data, **kwargs: "custom:" + json.dumps(data, **kwargs)
    assert formatter.format(_record()).startswith("custom:{")

