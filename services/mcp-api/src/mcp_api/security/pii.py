"""Redaction of data before it is stored (audit details now, transcripts with the agent).

Secrets are removed by the same rules as log lines (`agent_runner.observability.redaction`: API
keys, bearer tokens, provider keys, JWTs, private keys, passwords, registered secret values); on
top of that e-mail addresses, card-like numbers and the operator's own PII patterns
(`SECURE_AGENT_PRIVACY__PII_PATTERNS`) become `[REDACTED:pii]`. Dict keys are redacted like any
text, and nothing is stored unredacted at any depth (see `StorageRedactor.value`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent_runner.observability.redaction import REDACTED, SECRET_KEY_RE, as_text, redact_text

from .config import PrivacySettings

PII = "[REDACTED:pii]"
EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+")
# 13-19 digits, optionally grouped by spaces or dashes: payment-card shaped.
CARD_RE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
MAX_DEPTH = 16  # deeper containers are stored as TRUNCATED (strings and other leaves are still redacted)
TRUNCATED = "[TRUNCATED]"
_CONTAINERS = (Mapping, list, tuple, set, frozenset)


class StorageRedactor:
    def __init__(self, settings: PrivacySettings | None = None) -> None:
        settings = settings or PrivacySettings()
        self.patterns: list[re.Pattern[str]] = [CARD_RE]
        if settings.redact_emails:
            self.patterns.append(EMAIL_RE)
        for raw in settings.pii_patterns:
            try:
                self.patterns.append(re.compile(raw))
            except re.error as exc:
                raise ValueError(
                    f"SECURE_AGENT_PRIVACY__PII_PATTERNS entry {raw!r} is not a regex: {exc}"
                ) from exc

    def text(self, value: str) -> str:
        value = redact_text(value)
        for pattern in self.patterns:
            value = pattern.sub(PII, value)
        return value

    def value(self, value: Any, key: str | None = None, _depth: int = 0) -> Any:
        """A copy of JSON-like data with secrets and PII removed, at any depth (secret-named keys lose
        their value). Keys are text too: a key that holds a secret or PII is redacted (keys that end
        up alike are numbered, `[REDACTED]#2`). Bytes are redacted as their (UTF-8) text, sets walked
        like lists, any other object becomes its redacted `str()`; containers nested deeper than
        MAX_DEPTH become `[TRUNCATED]`, so nothing is ever returned unredacted."""
        if key is not None and value and SECRET_KEY_RE.search(key) and not isinstance(value, bool | int | float):
            return REDACTED  # a secret-named key loses its whole value, a list or mapping included
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, bytes | bytearray):
            return self.text(value.decode("utf-8", "replace"))
        if isinstance(value, _CONTAINERS):
            if _depth >= MAX_DEPTH:
                return TRUNCATED
            if isinstance(value, Mapping):
                return self._mapping(value, _depth)
            return [self.value(v, None, _depth + 1) for v in value]
        return self.text(_text(value))

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        items = list(value.items())
        names = [_key_text(k) for k, _ in items]
        safe = [self.text(name) for name in names]
        out: dict[str, Any] = {}
        if safe == names:  # no key changed (the usual case)
            for name, (_, v) in zip(names, items, strict=True):
                out[name] = self.value(v, name, depth + 1)
            return out
        # A changed key takes the first `name`, `name#2`, … that no other key has or will have: two
        # secrets used as keys stay two entries, and a redacted key never replaces an ordinary one.
        kept = {name for name, shown in zip(names, safe, strict=True) if shown == name}
        for name, shown, (_, v) in zip(names, safe, items, strict=True):
            if shown != name:
                candidate, n = shown, 2
                while candidate in out or candidate in kept:
                    candidate = f"{shown}#{n}"
                    n += 1
                shown = candidate
            out[shown] = self.value(v, name, depth + 1)
        return out


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes | bytearray):
        return key.decode("utf-8", "replace")
    return _text(key)


def _text(value: Any) -> str:
    return as_text(value, "<unprintable>")  # an object whose str() raises is still stored
