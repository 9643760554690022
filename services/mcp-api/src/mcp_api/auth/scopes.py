"""Permissions carried by API keys (and, later, OAuth tokens)."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    FILES_READ = "files:read"
    FILES_WRITE = "files:write"
    EXEC = "exec"
    AGENT = "agent"
    ADMIN = "admin"


ALL_SCOPES: tuple[str, ...] = tuple(s.value for s in Scope)
DEFAULT_KEY_SCOPES: tuple[str, ...] = (Scope.FILES_READ, Scope.FILES_WRITE, Scope.EXEC, Scope.AGENT)


def parse_scopes(raw: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Validate a scope list; unknown names are an error, not silently dropped."""
    items = raw.replace(",", " ").split() if isinstance(raw, str) else list(raw)
    unknown = sorted(set(items) - set(ALL_SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}")
    return tuple(dict.fromkeys(items))
