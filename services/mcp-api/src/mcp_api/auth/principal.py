"""Who is calling: set by the auth middleware for the duration of one HTTP request."""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass

TENANT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62})$")


@dataclass(frozen=True)
class Principal:
    tenant: str
    key_id: str
    scopes: frozenset[str]
    auth_method: str = "api_key"

    def has(self, scope: str) -> bool:
        return scope in self.scopes


current_principal: ContextVar[Principal | None] = ContextVar("secure_agent_principal", default=None)


class AccessDenied(Exception):
    """A tool or resource outside the caller's scopes."""
