"""gunicorn for mcp-api: several uvicorn workers, JSON logs, Prometheus multiprocess metrics.

    gunicorn -c services/mcp-api/gunicorn.conf.py            # from the repository root
    SECURE_AGENT_WORKERS=4 gunicorn -c services/mcp-api/gunicorn.conf.py

Settings come from the same SECURE_AGENT_* variables as `secure-agent serve`; the worker count
from SECURE_AGENT_WORKERS (or WEB_CONCURRENCY), default 2. MCP legacy sessions must stay
`stateless` (the default) with several workers.

Metrics: every worker writes its samples under PROMETHEUS_MULTIPROC_DIR (a private temp dir when
unset, wiped at start) and whichever worker answers /metrics sums them all. A worker that exits
is marked dead so its live gauges drop out.
"""

from __future__ import annotations

import os
import shutil
import tempfile

# Before anything imports prometheus_client: the value class is chosen at its import.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="secure-agent-metrics-")

from mcp_api.observability.logging import gunicorn_logconfig  # noqa: E402
from mcp_api.settings import Settings  # noqa: E402

_settings = Settings()

wsgi_app = "mcp_api.app:create_app()"
worker_class = "mcp_api.security.server.SecureUvicornWorker"  # no banner, header/slow-client limits
bind = [f"[{_settings.host}]:{_settings.port}" if ":" in _settings.host else f"{_settings.host}:{_settings.port}"]
workers = int(os.environ.get("SECURE_AGENT_WORKERS") or os.environ.get("WEB_CONCURRENCY") or 2)
# SSE streams and long tool calls: the worker heartbeat, not the request, is what `timeout` watches.
timeout = 120
graceful_timeout = 10
keepalive = 5
accesslog = None  # the app writes one JSON access line per request itself
# No control socket: its default path is shared by every gunicorn of the user and needs a writable $HOME.
control_socket_disable = True
logconfig_dict = gunicorn_logconfig(_settings)


def on_starting(server) -> None:  # noqa: ANN001
    """In the master, before any worker: fresh metrics dir, store schema and the dev key made once
    (workers racing to create them would fail to boot)."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    import asyncio

    from mcp_api.auth.api_keys import ApiKeyService
    from mcp_api.bootstrap import banner, ensure_dev_key
    from mcp_api.store.store import Store

    async def prepare() -> None:
        _settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = Store(_settings.store_url)
        try:
            await store.create_schema()
            dev = await ensure_dev_key(_settings, ApiKeyService(store))
            if dev.created:
                print(banner(_settings, dev), flush=True)  # a new key is shown once, as `serve` does
        finally:
            await store.aclose()

    asyncio.run(prepare())


def child_exit(server, worker) -> None:  # noqa: ANN001
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
