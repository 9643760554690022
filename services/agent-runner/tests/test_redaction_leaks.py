"""Secrets that used to reach a log line in clear: nested deeper than the walk's depth limit (in lists,
dicts, tuples, sets, bytes), inside objects JSON does not know (exceptions, dataclasses, enums,
anything whose str() or repr() shows a secret), and used as dict keys or field names; and the
`api_key=sk-…` pair that came out as `api_key=[REDACTED]]`.

Every case goes through `event()` and through a foreign logger's record with extra fields, to real
handlers built by `make_handler` (JSON and text, stream and file), to a handler built elsewhere (the
JSON formatter alone, no filter), and to a foreign handler that only sees the record."""

from __future__ import annotations

import collections
import dataclasses
import enum
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_runner.observability import context, redaction
from agent_runner.observability.logs import JsonFormatter, event, make_handler
from agent_runner.observability.redaction import REDACTED, redact_text, redact_value

# One of each shape the patterns know, with the part that must never be seen, and a registered value.
REGISTERED = "registered-secret-0123456789"
SECRETS = {
    "openai": ("sk-" + "O" * 40, "O" * 40),
    "anthropic": ("sk-ant-api03-" + "A" * 30, "A" * 30),
    "secure_agent": ("sa_AbCdEfGhIjKl_" + "S" * 32, "S" * 32),
    "github": ("ghp_" + "G" * 36, "G" * 36),
    "aws": ("AKIA" + "W" * 16, "AKIA" + "W" * 16),
    "google": ("AIza" + "g" * 35, "g" * 35),
    "slack": ("xoxb-" + "1" * 12 + "-" + "L" * 20, "L" * 20),
    "gitlab": ("glpat-" + "T" * 20, "T" * 20),
    "jwt": ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0." + "J" * 30, "J" * 30),
    "registered": (REGISTERED, REGISTERED),
}
MARKERS = [marker for _, marker in SECRETS.values()]
SECRET, MARKER = SECRETS["openai"]


def assert_clean(text: str) -> None:
    leaked = [marker for marker in MARKERS if marker in text]
    assert not leaked, (leaked, text)


pytestmark = pytest.mark.usefixtures("registered_secret")  # REGISTERED is the one secret (conftest.py)


def deep(value: Any, levels: int, shell: str = "list") -> Any:
    for _ in range(levels):
        value = {"list": lambda v: [v], "tuple": lambda v: (v,), "dict": lambda v: {"k": v},
                 "set": lambda v: frozenset([v]) if isinstance(v, str | frozenset | tuple) else (v,)}[shell](value)  # fmt: skip
    return value


@dataclasses.dataclass
class Credentials:
    user: str
    note: str
    token: str  # a secret-sounding field: replaced whole


class Provider(enum.Enum):
    OPENAI = SECRET


class StrShows:
    def __str__(self) -> str:
        return f"StrShows(password={REGISTERED}, key={SECRET})"


class ReprShows:  # object.__str__ falls back to __repr__
    def __repr__(self) -> str:
        return f"<ReprShows {SECRETS['github'][0]}>"


class StrRaises:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        return f"<StrRaises {SECRETS['slack'][0]}>"


def _exception_with_traceback() -> ValueError:
    try:
        raise ValueError(f"token={SECRETS['gitlab'][0]}")
    except ValueError as exc:
        return exc


def leak_fields() -> dict[str, Any]:
    """Field values (and names) that used to come out in clear, one of each kind."""
    nested_key = {"outer": {"a": {"b": {SECRETS["aws"][0]: 1}}}}
    for _ in range(4):  # a secret key at depth 7
        nested_key = {"k": nested_key}
    return {
        "deep_list": deep(SECRET, 12),
        "deep_tuple": deep(SECRETS["anthropic"][0], 10, "tuple"),
        "deep_dict": deep(f"Authorization: Bearer {SECRETS['jwt'][0]}", 11, "dict"),
        "deep_set": deep(SECRETS["secure_agent"][0], 12, "set"),
        "deep_bytes": deep(f"password={REGISTERED}".encode(), 10),
        "deep_bytearray": deep(bytearray(SECRETS["google"][0].encode()), 9),
        "mixed": [{"a": ({"b": [frozenset([SECRETS["github"][0]])]},)}] * 2,
        "set": {SECRETS["slack"][0]},
        "blob": bytearray(f"api_key={SECRET}".encode()),
        "error": ValueError(f"token={SECRET}"),
        "error_deep": deep(RuntimeError(f"rejected {SECRETS['anthropic'][0]}"), 10),
        "exception_class_and_tb": [ValueError, _exception_with_traceback().__traceback__],
        "creds": Credentials("me", f"key {SECRETS['secure_agent'][0]}", SECRET),
        "creds_deep": deep(Credentials("me", SECRET, "t"), 8),
        "provider": Provider.OPENAI,
        "enum_class": Provider,
        "str_shows": StrShows(),
        "repr_shows": ReprShows(),
        "str_raises": StrRaises(),
        "queue": collections.deque([SECRETS["google"][0]]),
        "secret_keys": {SECRET: 1, SECRETS["github"][0]: 2, f"x {REGISTERED}": 3, "ok": 4},
        "nested_key": nested_key,
        "tuple_key": {(SECRET, 1): "v"},
        "arguments": {SECRET: "v", SECRETS["aws"][0]: 1, "path": "/etc"},
        "pair": f"api_key={SECRET}",
    }


# ---------------------------------------------------------------------------------------------------
# redact_value itself


def test_strings_deeper_than_the_limit_are_redacted_and_deeper_containers_replaced() -> None:
    value = deep(SECRET, 20)
    out = redact_value(value)
    flat = json.dumps(out)
    assert_clean(flat)
    assert REDACTED in flat
    # within the limit a string keeps its shape: only the secret part goes
    assert redact_value(deep(f"x {SECRET}", 8)) == deep("x sk-[REDACTED]", 8)
    # one string past it, and a dict, a set and bytes past it
    assert redact_value(deep(f"x {SECRET}", 9)) == deep("x sk-[REDACTED]", 9)
    assert redact_value(deep({"a": SECRET}, 9)) == deep(REDACTED, 9)
    assert redact_value(deep(frozenset([SECRET]), 9)) == deep(REDACTED, 9)
    assert redact_value(deep(f"password={REGISTERED}".encode(), 9)) == deep("password=[REDACTED]", 9)
    assert redact_value(deep(bytearray(SECRET.encode()), 9)) == deep("sk-[REDACTED]", 9)


def test_a_self_referencing_value_ends_at_the_limit() -> None:
    loop: list[Any] = [SECRET]
    loop.append(loop)
    out = json.dumps(redact_value(loop))
    assert_clean(out)


def test_objects_become_what_the_encoder_would_write_redacted() -> None:
    assert redact_value(ValueError(f"token={SECRET}")) == "ValueError: token=[REDACTED]"
    assert redact_value(StrShows()) == "StrShows(password=[REDACTED], key=sk-[REDACTED])"
    assert redact_value(ReprShows()) == f"<ReprShows {REDACTED}>"
    assert redact_value(StrRaises()) == f"<StrRaises {REDACTED}>"
    assert redact_value(Credentials("me", f"k {SECRET}", "tok")) == {"user": "me", "note": "k sk-[REDACTED]", "token": REDACTED}
    assert redact_value(Provider.OPENAI) == "sk-[REDACTED]" and redact_value(Provider) == ["sk-[REDACTED]"]
    assert redact_value(ValueError) == "ValueError"
    assert redact_value(collections.deque([SECRET])) == "deque(['sk-[REDACTED]'])"
    # what JSON already writes as is stays as it is
    import datetime as dt
    import decimal

    when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert redact_value(when) is when and redact_value(decimal.Decimal("1.5")) == "1.5"


def test_secret_keys_are_redacted_and_kept_distinct() -> None:
    out = redact_value({SECRET: 1, SECRETS["openai"][0][:-1] + "X": 2, "sk-[REDACTED]": 3, "ok": 4})
    assert out == {"sk-[REDACTED]": 3, "sk-[REDACTED]#2": 2, "ok": 4}  # a literal "sk-[REDACTED]" key wins its name
    out = redact_value({REGISTERED: 1, f"{REGISTERED}!": 2, SECRETS["aws"][0]: 3})
    assert out == {REDACTED: 1, f"{REDACTED}!": 2, f"{REDACTED}#2": 3}
    # the name the line shows decides whether the value is a secret: "…token" still is
    assert redact_value({f"{REGISTERED} token": "v"}) == {f"{REDACTED} token": REDACTED}
    assert redact_value({"arguments": {SECRET: "abc", SECRETS["github"][0]: 1}}) == {
        "arguments": {"sk-[REDACTED]": "str[3]", REDACTED: "int"}
    }


def test_a_name_cached_as_clean_is_checked_again_after_a_secret_is_registered() -> None:
    name = "x-late-secret-value-42"
    assert redact_value({name: 1}) == {name: 1}
    redaction.register_secret("late-secret-value")
    assert redact_value({name: 1}) == {f"x-{REDACTED}-42": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"api_key={SECRET}", "api_key=[REDACTED]"),
        (f"api_key={SECRET} next", "api_key=[REDACTED] next"),
        (f"token={SECRETS['anthropic'][0]}&x=1", "token=[REDACTED]&x=1"),
        (f"api-key: {SECRETS['secure_agent'][0]}, y", "api-key: [REDACTED], y"),
        ("password=abc[def] tail", "password=[REDACTED] tail"),
        ('{"api_key": "sk-' + "O" * 40 + '"}', '{"api_key": "[REDACTED]"}'),
        ("token=[REDACTED]", "token=[REDACTED]"),
    ],
)
def test_a_key_value_pair_around_an_already_redacted_value_has_no_stray_bracket(text: str, expected: str) -> None:
    assert redact_text(text) == expected


# ---------------------------------------------------------------------------------------------------
# Whole lines, through real handlers


@pytest.fixture
def handlers(tmp_path: Path) -> Iterator[tuple[logging.Logger, dict[str, Any]]]:
    """A logger with our handlers (JSON and text, stream and file), a bare JSON formatter handler
    (built elsewhere: no filter) and a foreign handler that keeps the records it sees."""
    streams = {"json_stream": io.StringIO(), "text_stream": io.StringIO(), "bare_json": io.StringIO()}
    files = {"json_file": tmp_path / "j.log", "text_file": tmp_path / "t.log"}
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    bare = logging.StreamHandler(streams["bare_json"])
    bare.setFormatter(JsonFormatter("mcp-api"))
    logger = logging.getLogger("test.redaction_leaks")
    logger.handlers = [
        Keep(),  # first: it sees the record before our handlers' filters touch it
        bare,
        make_handler("mcp-api", "json", stream=streams["json_stream"]),
        make_handler("mcp-api", "text", stream=streams["text_stream"]),
        make_handler("mcp-api", "json", file=files["json_file"]),
        make_handler("mcp-api", "text", file=files["text_file"], max_bytes=0),
    ]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    outputs: dict[str, Any] = {"records": records, "streams": streams, "files": files}
    try:
        yield logger, outputs
    finally:
        for handler in logger.handlers:
            handler.close()
        logger.handlers = []


def _texts(outputs: dict[str, Any]) -> dict[str, str]:
    texts = {name: stream.getvalue() for name, stream in outputs["streams"].items()}
    texts.update({name: path.read_text(encoding="utf-8") for name, path in outputs["files"].items()})
    return texts


def _check(outputs: dict[str, Any], lines: int, records: bool = True) -> dict[str, list[dict[str, Any]]]:
    parsed = {}
    for name, text in _texts(outputs).items():
        assert_clean(text)
        assert len(text.splitlines()) >= lines, (name, text)
        if "json" in name:
            parsed[name] = [json.loads(line) for line in text.splitlines()]
    for record in outputs["records"] if records else ():  # event() redacts before any handler sees the record
        assert_clean(repr(vars(record)))
    return parsed


def test_event_fields_never_reach_a_line_or_a_record_in_clear(handlers) -> None:
    logger, outputs = handlers
    fields = leak_fields()
    with context.bind(request_id="r1"):
        event(logger, logging.WARNING, "leaks", **fields, **{SECRET: "a secret as a field name", REGISTERED: 2})
    parsed = _check(outputs, 1)
    for name in ("json_stream", "json_file", "bare_json"):
        (line,) = parsed[name]
        assert line["error"] == "ValueError: token=[REDACTED]"
        assert line["secret_keys"] == {"sk-[REDACTED]": 1, REDACTED: 2, f"x {REDACTED}": 3, "ok": 4}
        assert line["arguments"] == {"sk-[REDACTED]": "str[1]", REDACTED: "int", "path": "str[4]"}
        assert line["creds"] == {"user": "me", "note": "key sa_AbCdEfGhIjKl_[REDACTED]", "token": REDACTED}
        assert line["pair"] == "api_key=[REDACTED]" and line["blob"] == "api_key=[REDACTED]"
        assert line["sk-[REDACTED]"] == "a secret as a field name" and line[REDACTED] == 2
        assert line["provider"] == "sk-[REDACTED]" and line["str_raises"].startswith("<StrRaises ")


def test_foreign_records_with_extra_fields_never_reach_a_line_in_clear(handlers) -> None:
    logger, outputs = handlers
    foreign = logging.getLogger("test.redaction_leaks.foreign")  # propagates to the handlers above
    extra = {**leak_fields(), SECRET: 1, f"{REGISTERED}_note": "n", "trace_id": ValueError(f"bad {SECRET}")}
    foreign.warning("foreign %s %r", StrShows(), ReprShows(), extra=extra)
    try:
        raise _exception_with_traceback()
    except ValueError:
        foreign.exception("failed: %s", deep(SECRET, 12), extra={"detail": {SECRETS["jwt"][0]: deep(SECRET, 15)}})
    parsed = _check(outputs, 2, records=False)  # a foreign record is redacted by our handlers' filter
    for name in ("json_stream", "json_file", "bare_json"):
        first, second = parsed[name]
        assert first["sk-[REDACTED]"] == 1 and first[f"{REDACTED}_note"] == "n"
        assert first["trace_id"] == "ValueError: bad sk-[REDACTED]"  # a reserved name, written by the encoder
        assert first["message"] == "foreign StrShows(password=[REDACTED], key=sk-[REDACTED]) <ReprShows [REDACTED]>"
        assert first["deep_set"] != first["set"] and "exc_info" in second
        assert list(second["detail"]) == [REDACTED]
    for name in ("text_stream", "text_file"):
        text = _texts(outputs)[name]
        assert "ValueError: token=[REDACTED]" in text and "StrShows(password=[REDACTED]" in text


@pytest.mark.parametrize("secret", [value for value, _ in SECRETS.values()], ids=list(SECRETS))
def test_every_secret_shape_as_a_key_at_several_depths(handlers, secret: str) -> None:
    logger, outputs = handlers
    for depth in (0, 1, 3, 8, 12):
        value: Any = {secret: f"v{depth}"}
        for _ in range(depth):
            value = {"k": value}
        event(logger, logging.INFO, "key", field=value)
        logging.getLogger("test.redaction_leaks.foreign").info("key", extra={"field": value})
    _check(outputs, 10, records=False)
