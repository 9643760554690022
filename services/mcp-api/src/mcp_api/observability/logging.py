"""JSON logs of mcp-api: one redacting handler for our loggers, uvicorn's, gunicorn's and the SDK's.

The formatter, filters and log context are shared with agent-runner
(`agent_runner.observability`); this module applies mcp-api's settings to them.
"""

from __future__ import annotations

import logging
from typing import IO

from agent_runner.observability import context, register_secret
from agent_runner.observability.logs import configure_logging

from ..settings import Settings

_configured_for: Settings | None = None


def apply_secrets(settings: Settings) -> None:
    """Register every configured secret value with the redaction filter and set the tenant-hash key."""
    secrets: list[str | None] = []
    if settings.dev_api_key:
        secrets.append(settings.dev_api_key.get_secret_value())
    if settings.logging.tenant_hash_key:
        key = settings.logging.tenant_hash_key.get_secret_value()
        secrets.append(key)
        context.set_tenant_hash_key(key)
    secrets += [value.get_secret_value() for value in settings.tracing.otlp_headers.values()]
    if settings.database_url and "@" in settings.database_url:
        # The password part of a DSN, when the URL carries one.
        from sqlalchemy.engine import make_url

        secrets.append(make_url(settings.database_url).password)
    register_secret(*secrets)


def setup_logging(settings: Settings, *, stream: IO[str] | None = None) -> logging.Handler:
    """Route all logging of this process through the JSON (or text) redacting handler."""
    global _configured_for
    apply_secrets(settings)
    handler = configure_logging(
        "mcp-api",
        settings.log_level,
        settings.logging.format,
        stream=stream,
        file=settings.logging.file,
        max_bytes=settings.logging.file_max_bytes,
        backups=settings.logging.file_backups,
    )
    _configured_for = settings
    return handler


def tenant_hash(tenant: str) -> str:
    return context.hash_tenant(tenant)


def gunicorn_logconfig(settings: Settings | None = None) -> dict:
    """gunicorn's `logconfig_dict`: the master's and workers' lines as JSON, like the app's."""
    level = (settings.log_level if settings else "INFO").upper()
    handler = {"()": "agent_runner.observability.logs.json_handler", "service": "mcp-api"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": level, "handlers": ["json"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
        "handlers": {"json": handler},
        "formatters": {},
    }
