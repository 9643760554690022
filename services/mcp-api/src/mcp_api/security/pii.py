"""Redaction of data before it is stored (audit details now, transcripts with the agent).

Secrets are removed by the same rules as log lines (`agent_runner.observability.redaction`: API
keys, bearer tokens, provider keys, JWTs, private keys, passwords, registered secret values); on
top of that e-mail addresses, card-like numbers and the operator's own PII patterns
(`SECURE_AGENT_PRIVACY__PII_PATTERNS`) become `[REDACTED:pii]`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent_runner.observability.redaction import SECRET_KEY_RE, redact_text

from .config import PrivacySettings

PII = "[REDACTED:pii]"
EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+")
# 13-19 digits, optionally grouped by spaces or dashes: payment-card shaped.
CARD_RE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
MAX_DEPTH = 16


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
        """A copy of JSON-like data with secrets and PII removed (secret-named keys lose their value)."""
        if key is not None and SECRET_KEY_RE.search(key) and isinstance(value, str) and value:
            return "[REDACTED]"
        if isinstance(value, str):
            return self.text(value)
        if _depth >= MAX_DEPTH:
            return "[TRUNCATED]" if isinstance(value, Mapping | list | tuple) else value
        if isinstance(value, Mapping):
            return {str(k): self.value(v, str(k), _depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v, None, _depth + 1) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.text(str(value))
