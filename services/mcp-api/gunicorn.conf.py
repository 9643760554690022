"""gunicorn for mcp-api: several uvicorn workers, JSON logs, Prometheus multiprocess metrics.

    gunicorn -c services/mcp-api/gunicorn.conf.py            # from the repository root
    SECURE_AGENT_WORKERS=4 gunicorn -c services/mcp-api/gunicorn.conf.py

Settings come from the same SECURE_AGENT_* variables as `secure-agent serve`. MCP legacy sessions
must stay `stateless` (the default) with several workers. Process settings:

- workers: SECURE_AGENT_WORKERS (or WEB_CONCURRENCY). Default with the kubernetes runner backend: the
  CPUs this process may use (its affinity mask, capped by a cgroup CPU quota, as in a container with a
  CPU limit), at least 2, at most 8; uvicorn workers are asynchronous: one per CPU uses them, two keep
  serving while one restarts. Default with the local backend: 1, because each worker keeps its own
  runners and background jobs (see `workers` below).
- keepalive: SECURE_AGENT_LIMITS__KEEP_ALIVE_TIMEOUT_S when set, else 75 s. gunicorn serves behind a
  load balancer or proxy, which reuses idle upstream connections for up to its own idle timeout
  (60 s on AWS ALB, nginx upstream keepalive, GCP 600 s: set the variable above that); the server must
  keep them longer, or it closes one just as the balancer sends on it and the client gets a 502.
- max_requests (SECURE_AGENT_MAX_REQUESTS, default 10000 with the kubernetes backend, 0 = never, the
  default with local runners) with jitter (default 10 %): workers are recycled one at a time, so slow
  leaks cannot grow without bound and the workers do not all restart together.
- graceful_timeout (SECURE_AGENT_GRACEFUL_TIMEOUT_S, default 25 s): on SIGTERM in-flight requests
  get this long to finish, inside Kubernetes' default 30 s terminationGracePeriodSeconds.
- timeout 120 s: the worker heartbeat (not a request) must not stall longer.

Metrics: every worker writes its samples under PROMETHEUS_MULTIPROC_DIR (a private temp dir when
unset, wiped at start) and whichever worker answers /metrics sums them all. A worker that exits
is marked dead so its live gauges drop out.
"""

from __future__ import annotations

import math
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
bind = [
    f"[{_settings.host}]:{_settings.port}" if ":" in _settings.host else f"{_settings.host}:{_settings.port}"
]


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 or v1 CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = None
    try:  # cgroup v2: "max 100000" or "150000 100000"
        with open("/sys/fs/cgroup/cpu.max") as f:
            limit, period = f.read().split()[:2]
        if limit != "max":
            quota = int(limit) / int(period)
    except (OSError, ValueError):
        try:  # cgroup v1
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
                limit_us = int(f.read())
            with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                period_us = int(f.read())
            if limit_us > 0 and period_us > 0:
                quota = limit_us / period_us
        except (OSError, ValueError):
            pass
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _env_int(*names: str, default: int) -> int:
    for name in names:
        if os.environ.get(name):
            return int(os.environ[name])
    return default


# With the local runner backend each worker starts its own runner per workspace and keeps its own
# background jobs: a job started through one worker is unknown to the next request's worker. So
# local defaults to one worker; the kubernetes backend shares one runner pod per workspace between
# every worker and replica, so it takes one per CPU.
LOCAL_RUNNERS = _settings.runner.backend == "local"
workers = _env_int(
    "SECURE_AGENT_WORKERS", "WEB_CONCURRENCY", default=1 if LOCAL_RUNNERS else min(max(usable_cpus(), 2), 8)
)
# SSE streams and long tool calls: the worker heartbeat, not the request, is what `timeout` watches.
timeout = 120
graceful_timeout = _env_int("SECURE_AGENT_GRACEFUL_TIMEOUT_S", default=25)
# Longer than the idle timeout of the load balancer in front (see above); an explicit setting wins.
keepalive = (
    _settings.limits.keep_alive_timeout_s
    if os.environ.get("SECURE_AGENT_LIMITS__KEEP_ALIVE_TIMEOUT_S")
    else 75
)
# Recycling a worker restarts its local runners and ends their background jobs, and with local runners
# there is one worker: its recycling would be a restart of the whole service. Off there by default.
max_requests = _env_int("SECURE_AGENT_MAX_REQUESTS", default=0 if LOCAL_RUNNERS else 10_000)
max_requests_jitter = _env_int("SECURE_AGENT_MAX_REQUESTS_JITTER", default=max_requests // 10)
# The workers' heartbeat files: memory-backed when /dev/shm is writable (a container's read-only root
# and a disk-backed /tmp would stall heartbeats under I/O pressure); else the temp dir. gunicorn
# unlinks each file right after mkstemp, so a shared directory exposes nothing.
_SHM = "/dev/shm"  # noqa: S108  # nosec B108 - unlinked at once, see above
worker_tmp_dir = _SHM if os.access(_SHM, os.W_OK) else None
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
    if LOCAL_RUNNERS and workers > 1:
        server.log.warning(
            "%d workers with the local runner backend: each worker has its own runners, so background "
            "jobs (run_command background, job_output, job_kill) are only reachable through the worker "
            "that started them; use one worker, or the kubernetes backend", workers,
        )


def child_exit(server, worker) -> None:  # noqa: ANN001
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
