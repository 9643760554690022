"""Metrics for the store, the runner backend and readiness, attached from outside those modules.

* `instrument_store`: SQLAlchemy engine events time every statement and count failures.
* `InstrumentedRunners`: wraps any RunnerBackend; claim latency, cold starts, start failures and
  the pool gauge. The Kubernetes backend reports warm/claimed states itself through RUNNER_POOL.
* `check_dependencies` / `probe_forever`: what /ready reports, also kept current in the
  `secure_agent_ready` and `secure_agent_dependency_up` gauges for alerts.
* `refresh_tls_expiry`: notAfter of the configured certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from .metrics import (
    DEPENDENCY_UP,
    READY,
    RUNNER_CLAIM_SECONDS,
    RUNNER_COLD_START_SECONDS,
    RUNNER_POOL,
    RUNNER_POOL_CAPACITY,
    RUNNER_START_FAILURES,
    STORE_ERRORS,
    STORE_SECONDS,
    TLS_CERT_EXPIRY,
    child,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ..deps import Services
    from ..runners.base import BackendStatus, RunnerBackend
    from ..store.store import Store

log = logging.getLogger(__name__)
_START_KEY = "secure_agent_started"
_VERBS = {"select": "select", "insert": "insert", "update": "update", "delete": "delete", "with": "select"}


def _operation(statement: str) -> str:
    verb = statement.lstrip().split(None, 1)[0].lower() if statement and statement.strip() else ""
    return _VERBS.get(verb, "other")


def instrument_engine(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine
    if getattr(sync_engine, "_secure_agent_instrumented", False):
        return

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        conn.info.setdefault(_START_KEY, []).append(time.perf_counter())

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        starts = conn.info.get(_START_KEY)
        if starts:
            STORE_SECONDS.labels(operation=_operation(statement)).observe(time.perf_counter() - starts.pop())

    @event.listens_for(sync_engine, "handle_error")
    def _error(ctx) -> None:  # noqa: ANN001
        STORE_ERRORS.labels(operation=_operation(ctx.statement or "")).inc()
        if ctx.connection is not None:
            starts = ctx.connection.info.get(_START_KEY)
            if starts:
                starts.pop()

    sync_engine._secure_agent_instrumented = True  # type: ignore[attr-defined]


def instrument_store(store: Store) -> None:
    instrument_engine(store.engine)


class InstrumentedRunners:
    """A RunnerBackend that measures the one it wraps; everything else is delegated."""

    def __init__(self, inner: RunnerBackend, capacity: int | None = None) -> None:
        self._inner = inner
        self.name = inner.name
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()
        if capacity is not None:
            RUNNER_POOL_CAPACITY.labels(backend=inner.name).set(capacity)
        RUNNER_POOL.labels(backend=inner.name, state="ready").set(0)
        RUNNER_START_FAILURES.labels(backend=inner.name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def client_for(self, tenant: str, workspace: str):
        from ..runners.base import RunnerStartError

        started = time.perf_counter()
        try:
            client = await self._inner.client_for(tenant, workspace)
        except RunnerStartError:
            RUNNER_START_FAILURES.labels(backend=self.name).inc()
            raise
        elapsed = time.perf_counter() - started
        child(RUNNER_CLAIM_SECONDS, self.name).observe(elapsed)  # every tool call: the cached child
        if client not in self._seen:
            self._seen.add(client)
            RUNNER_COLD_START_SECONDS.labels(backend=self.name).observe(elapsed)
            await self.status()
        return client

    async def list_workspaces(self, tenant: str) -> list[str]:
        return await self._inner.list_workspaces(tenant)

    async def status(self) -> BackendStatus:
        status = await self._inner.status()
        RUNNER_POOL.labels(backend=self.name, state="ready").set(status.runners)
        return status

    async def aclose(self) -> None:
        await self._inner.aclose()
        RUNNER_POOL.labels(backend=self.name, state="ready").set(0)


async def check_dependencies(services: Services) -> dict[str, dict]:
    """Each dependency's state for /ready; fails closed (an exception counts as down)."""
    from ..store.store import StoreUnavailable

    checks: dict[str, dict] = {}
    try:
        await services.store.ping()
        checks["store"] = {"ok": True}
    except StoreUnavailable as exc:
        checks["store"] = {"ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - readiness must answer, whatever broke
        checks["store"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    try:
        status = await services.runners.status()
        checks["runners"] = {"ok": status.healthy, "backend": status.backend, "runners": status.runners}
    except Exception as exc:  # noqa: BLE001
        checks["runners"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    for name, check in checks.items():
        DEPENDENCY_UP.labels(dependency=name).set(1 if check["ok"] else 0)
    READY.set(1 if all(c["ok"] for c in checks.values()) else 0)
    return checks


def observability_status(settings) -> dict:
    """For /diagnostics: where logs, spans and metrics go (no credentials)."""
    import os

    from agent_runner.observability.tracing import otlp_traces_endpoint

    return {
        "log_format": settings.logging.format,
        "log_file": str(settings.logging.file) if settings.logging.file else None,
        "tracing_enabled": settings.tracing.enabled,
        "traces_exported_to": otlp_traces_endpoint(settings.tracing.otlp_endpoint) if settings.tracing.enabled else None,
        "metrics_multiprocess": bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")),
        "tls_certificates": [str(p) for p in settings.metrics.tls_cert_files],
    }


def refresh_tls_expiry(paths: list[Path]) -> dict[str, float]:
    """Export notAfter of each PEM certificate file; unreadable files are logged and show as 0."""
    from cryptography import x509

    expiries: dict[str, float] = {}
    for path in paths:
        label = path.name
        try:
            certificate = x509.load_pem_x509_certificate(path.read_bytes())
            expiries[label] = certificate.not_valid_after_utc.timestamp()
        except (OSError, ValueError) as exc:
            log.warning("cannot read TLS certificate %s: %s", path, exc)
            expiries[label] = 0.0
        TLS_CERT_EXPIRY.labels(certificate=label).set(expiries[label])
    return expiries


async def probe_forever(services: Services, interval_s: float) -> None:
    """Keep the readiness and certificate gauges current while no one calls /ready."""
    while True:
        with contextlib.suppress(Exception):
            await check_dependencies(services)
        if services.settings.metrics.tls_cert_files:
            with contextlib.suppress(Exception):
                refresh_tls_expiry(list(services.settings.metrics.tls_cert_files))
        await asyncio.sleep(interval_s)
