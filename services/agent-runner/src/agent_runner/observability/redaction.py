"""Redaction: secrets never reach a log line, whoever logs them and however they are nested.

Two layers, both applied by every handler that `configure_logging` installs:

* `redact_text` rewrites known secret shapes inside any string: Authorization headers, bearer
  tokens, secure-agent API keys (`sa_<key id>_<secret>`, the key id is kept), provider keys
  (`sk-…`, `sk-ant-…`, Google, GitHub, Slack, AWS), JWTs, PEM private keys, passwords in URLs and
  `password=…` / `"api_key": "…"` pairs, and any exact value registered with `register_secret`
  (the dev API key, the runner token, collector credentials).
* `redact_value` walks structured log fields: values under secret-sounding keys are replaced
  whole, and tool `arguments` are reduced to their names and sizes, because an argument (a file's
  content, a command line) can hold a secret of no recognisable shape. Keys are text too (a secret
  used as a dict key or field name is redacted), strings are redacted at any depth (containers past
  MAX_DEPTH become REDACTED), and an object JSON does not know (an exception, a dataclass, anything
  with a secret in its str()) becomes what the JSON encoder would write for it, redacted.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import re
import threading
import traceback
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

REDACTED = "[REDACTED]"

# Field names whose values are secrets whatever they look like (`input_tokens` is not: the secret
# word must end the name).
SECRET_KEY_RE = re.compile(
    r"(?i)(?:^|[_.-])?(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|client[_-]?secret|authorization|cookie|set-cookie|credentials?|signature)$"
)
# Fields that carry tool or command input: logged as a summary, never by value.
ARGUMENT_FIELDS = frozenset({"arguments", "args_json", "tool_arguments", "params", "request_body", "body"})

_KEY_WORDS = (
    r"password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|client[_-]?secret|credentials?"
)
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # PEM private keys, whole block.
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
        "[REDACTED:private-key]",
    ),
    # Authorization / Proxy-Authorization header values, in HTTP dumps, dict reprs and JSON.
    (
        re.compile(
            r"(?i)((?:proxy-)?authorization\\?[\"']?\s*[:=]\s*\\?[\"']?)"
            r"(?:(?:bearer|basic|token|digest)\s+)?[^\s\"'\\,;}\]]+"
        ),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{4,}"), r"\1 " + REDACTED),
    # secure-agent API keys: keep the key id (it names the key, it is not the secret).
    (re.compile(r"(?<![A-Za-z0-9])(sa_[A-Za-z0-9]{12}_)[A-Za-z0-9_-]+"), r"\1" + REDACTED),
    # Model-provider and common vendor keys.
    (re.compile(r"(?<![A-Za-z0-9])sk-ant-[A-Za-z0-9_-]{8,}"), "sk-ant-" + REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{16,}"), "sk-" + REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{30,}"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])glpat-[A-Za-z0-9_-]{16,}"), REDACTED),
    # JWTs (header.payload.signature, base64url, header and payload are JSON objects: "eyJ").
    (re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # user:password@ in URLs.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@"), r"\1" + REDACTED + "@"),
    # password=..., "api_key": "...", token: '...' (quoted values may hold spaces).
    (
        re.compile(
            rf"(?i)((?<![A-Za-z0-9])[A-Za-z0-9_.-]*(?:{_KEY_WORDS})\\?[\"']?\s*[:=]\s*)(\\?[\"'])(.*?)(\2)"
        ),
        r"\1\2" + REDACTED + r"\4",
    ),
    (
        re.compile(
            rf"(?i)((?<![A-Za-z0-9])[A-Za-z0-9_.-]*(?:{_KEY_WORDS})\s*[:=]\s*)(?![\"'\\\[{{]|{re.escape(REDACTED)})"
            # the value, with any bracketed part inside it: `sk-[REDACTED]` (an earlier pattern's work)
            # is replaced whole, not up to its `]` (which left `api_key=[REDACTED]]`)
            r"(?:[^\s\"'\\,;&}\]\[]|\[[^\s\"'\\,;&}\]\[]*\]?)+"
        ),
        r"\1" + REDACTED,
    ),
]
# Each pattern with the literals it cannot match without (any one of them), and whether they are
# looked for as written or in the lower-cased text (the case-insensitive patterns). On ASCII text a
# pattern none of whose literals occur cannot match, so `redact_text` skips it; the output is the
# same as running every pattern. (Non-ASCII text runs every pattern: under IGNORECASE "ı" matches
# "i" and "ſ" matches "s", which lower() does not show.) tests/test_redaction_fast_paths.py checks
# each entry against the pattern and the whole against the plain scan.
_KEY_WORD_LITERALS = ("pass", "pwd", "secret", "token", "key", "credential")  # every one of _KEY_WORDS
_LITERALS: list[tuple[tuple[str, ...], bool]] = [
    (("-----BEGIN ",), True),
    (("authorization",), False),
    (("bearer",), False),
    (("sa_",), True),
    (("sk-ant-",), True),
    (("sk-",), True),
    (("AIza",), True),
    (("gh", "github_pat_"), True),
    (("xox",), True),
    (("AKIA", "ASIA"), True),
    (("glpat-",), True),
    (("eyJ",), True),
    (("://",), True),
    (_KEY_WORD_LITERALS, False),
    (_KEY_WORD_LITERALS, False),
]
_SCANS: list[tuple[re.Pattern[str], str, tuple[str, ...], bool]] = [
    (pattern, replacement, literals, cased)
    for (pattern, replacement), (literals, cased) in zip(_PATTERNS, _LITERALS, strict=True)
]

_registered: set[str] = set()
_registered_re: re.Pattern[str] | None = None
_lock = threading.Lock()
# Registered values shorter than this would redact ordinary words.
MIN_REGISTERED_LENGTH = 8


def register_secret(*values: str | None) -> None:
    """Redact these exact strings wherever they appear (the dev key, a runner token, …)."""
    global _registered_re
    with _lock:
        for value in values:
            if value and len(value) >= MIN_REGISTERED_LENGTH:
                _registered.add(value)
        if _registered:
            alternatives = sorted(_registered, key=len, reverse=True)
            _registered_re = re.compile("|".join(re.escape(v) for v in alternatives))
        _forget_clean_keys()


def forget_secrets() -> None:
    """Drop every registered value (tests)."""
    global _registered_re
    with _lock:
        _registered.clear()
        _registered_re = None
        _forget_clean_keys()


# Short tokens of these characters ("ok", "files/read", "2025-11-25", a hex id) cannot hold a secret
# shape above: every pattern needs a space, ':', '=' or '@', or matches at least 15 characters
# (`sk-ant-` + 8, `xoxb-` + 10). They skip the pattern scan; registered values are still replaced.
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_./-]{1,14}")


def redact_text(text: str) -> str:
    if not text:
        return text
    registered = _registered_re
    if registered is not None and len(text) >= MIN_REGISTERED_LENGTH:  # no registered value is shorter
        text = registered.sub(REDACTED, text)
    if len(text) <= 14 and _SAFE_TOKEN.fullmatch(text):
        return text
    if not text.isascii():
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text
    lower = text.lower()
    for pattern, replacement, literals, cased in _SCANS:
        haystack = text if cased else lower
        for literal in literals:
            if literal in haystack:
                break
        else:
            continue  # cannot match: skip the scan
        redacted = pattern.sub(replacement, text)
        if redacted != text:
            text = redacted
            lower = text.lower()
    return text


# Field names (dict keys, extra field names) that `redact_text` leaves as they are: the same few dozen
# come back on every line. A key that is not here is redacted like any text (a secret used as a key
# is no less a secret). Bounded; replaced, not cleared, when a secret is registered, so that a name
# checked against the old secrets is never added to the new set.
_clean_keys: set[str] = set()
_CLEAN_KEYS_MAX = 2048


def _forget_clean_keys() -> None:
    global _clean_keys
    _clean_keys = set()


def redact_key(name: str) -> str:
    """A field name as a log line may show it: `redact_text` of it (cached for clean names)."""
    clean = _clean_keys  # before redact_text reads the registered values (see _forget_clean_keys)
    if name in clean:
        return name
    redacted = redact_text(name)
    if redacted == name and type(name) is str and len(clean) < _CLEAN_KEYS_MAX:
        clean.add(name)
    return redacted


def free_key(name: str, taken: Mapping[str, Any]) -> str:
    """`name`, or `name#2`, `name#3`, … the first not in `taken`: two secrets used as keys stay two
    keys once both read `[REDACTED]`."""
    if name not in taken:
        return name
    n = 2
    while f"{name}#{n}" in taken:
        n += 1
    return f"{name}#{n}"


def redact_keys(fields: Mapping[str, Any]) -> dict[str, Any]:
    """`fields` with every key through `redact_key` (keys that change are kept distinct)."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        name = key if type(key) is str else str(key)
        safe = redact_key(name)
        out[safe if safe == name else free_key(safe, out)] = value
    return out


class ArgumentSummary(dict):
    """Names and sizes of arguments (a summary is not summarized again)."""


def summarize_arguments(arguments: Any) -> Any:
    """What a log may say about tool arguments: their names and sizes, never their values."""
    if isinstance(arguments, ArgumentSummary):
        return arguments
    if isinstance(arguments, Mapping):
        return ArgumentSummary(redact_keys({str(k): _shape(v) for k, v in arguments.items()}))
    return ArgumentSummary({"value": _shape(arguments)})


def _shape(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return type(value).__name__
    if isinstance(value, str | bytes):
        return f"{type(value).__name__}[{len(value)}]"
    if isinstance(value, Mapping | list | tuple):
        return f"{type(value).__name__}[{len(value)}]"
    return type(value).__name__


_PLAIN_KEY, _ARGUMENT_KEY, _SECRET_KEY = 0, 1, 2
# What each field name is (the same few dozen names come back on every line); bounded, names only.
_key_kinds: dict[str, int] = {}
_KEY_KINDS_MAX = 2048


def _key_kind(key: str) -> int:
    kind = _key_kinds.get(key)
    if kind is None:
        kind = _ARGUMENT_KEY if key in ARGUMENT_FIELDS else _SECRET_KEY if SECRET_KEY_RE.search(key) else _PLAIN_KEY
        if type(key) is str and len(_key_kinds) < _KEY_KINDS_MAX:
            _key_kinds[key] = kind
    return kind


MAX_DEPTH = 8  # deeper containers are logged as REDACTED (strings and other leaves are still redacted)
_CONTAINERS = (Mapping, list, tuple, set, frozenset)


def redact_value(value: Any, key: str | None = None, _depth: int = 0) -> Any:
    """A copy of a structured log value with secrets removed: dicts (their keys too), lists, tuples
    and sets are walked, strings and bytes redacted as text, and any other object becomes what the
    JSON encoder would write for it, redacted (`_object_value`). Nothing comes back unredacted, at
    any depth: containers nested deeper than MAX_DEPTH become REDACTED."""
    if key is not None:
        kind = _key_kinds.get(key)
        if kind is None:
            kind = _key_kind(key)
        if kind == _ARGUMENT_KEY:
            return summarize_arguments(value)
        if kind == _SECRET_KEY and value not in (None, "") and not isinstance(value, bool | int | float):
            return REDACTED
    cls = type(value)
    if cls is str:
        return redact_text(value)
    if value is None or cls is int or cls is float or cls is bool:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray):
        return redact_text(value.decode("utf-8", "replace"))
    if _depth > MAX_DEPTH and (isinstance(value, _CONTAINERS) or _is_dataclass(value)):
        return REDACTED
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        clean = _clean_keys
        for k, v in value.items():
            name = k if type(k) is str else str(k)
            if name not in clean:
                safe = redact_key(name)
                if safe != name:
                    name = free_key(safe, out)
            out[name] = redact_value(v, name, _depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v, None, _depth + 1) for v in value]
    return _object_value(value, _depth)


def _is_dataclass(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _object_value(value: Any, depth: int) -> Any:
    """What python-json-logger's encoder writes for an object JSON does not know (its `default`, in
    its order), redacted: numbers and dates as they are, an exception as `Type: message`, a
    traceback as its text, an enum as its value, a dataclass as a dict of its fields, a class as its
    name, anything else as `str()` (or `repr()`)."""
    if isinstance(value, int | float | datetime.date | datetime.time):  # no secret in a number or a date
        return value
    if isinstance(value, BaseException):
        return redact_text(f"{value.__class__.__name__}: {as_text(value)}")
    if isinstance(value, TracebackType):
        return redact_text("".join(traceback.format_tb(value)).strip())
    if isinstance(value, enum.Enum):
        return redact_value(value.value, None, depth)
    if isinstance(value, enum.EnumMeta):
        return redact_value([member.value for member in value], None, depth)
    if _is_dataclass(value):
        # its fields, walked like a dict (not dataclasses.asdict: that deep-copies, without a depth limit)
        return redact_value({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, None, depth)
    if isinstance(value, type):
        return redact_text(value.__name__)
    return redact_text(as_text(value))


def as_text(value: Any, unprintable: str = "__could_not_encode__") -> str:
    """`str(value)`, else `repr(value)`, else `unprintable` (by default python-json-logger's
    `unknown_default`): an object whose str() raises is still written, and still redacted."""
    for render in (str, repr):
        try:
            return render(value)
        except Exception:  # noqa: BLE001, PERF203, S112
            continue
    return unprintable


def encodable(value: Any) -> Any:
    """For a JSON encoder's `default`: `value` redacted, as JSON-native data (a date as its ISO text)."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return redact_value(value)


def redact_fields(fields: Mapping[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Each field redacted under its name, and each name redacted (but those in `skip`)."""
    skipped = set(skip)
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in skipped:
            out[key] = value
            continue
        value = redact_value(value, key)
        name = key if type(key) is str else str(key)
        safe = redact_key(name)
        out[safe if safe == name else free_key(safe, out)] = value
    return out
