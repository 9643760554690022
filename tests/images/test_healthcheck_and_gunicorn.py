"""The runner image's health check script and the gunicorn settings the mcp-api image runs with
(no container engine needed)."""

from __future__ import annotations

import importlib.util
import runpy
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from images_helpers import ROOT

TOKEN = "t" * 32


def _load_healthcheck():
    spec = importlib.util.spec_from_file_location(
        "runner_healthcheck", ROOT / "images" / "agent-runner" / "healthcheck.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Runner(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        ok = self.path == "/v1/health" and self.headers.get("Authorization") == f"Bearer {TOKEN}"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_runner():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Runner)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _cmdline(tmp_path: Path, *args: str) -> str:
    path = tmp_path / "cmdline"
    path.write_bytes(
        b"\0".join(a.encode() for a in ("python3", "-m", "agent_runner", "serve", *args)) + b"\0"
    )
    return str(path)


def test_runner_healthcheck(tmp_path, fake_runner):
    check = _load_healthcheck()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    serve = ("--workspace", "/workspace", "--host", "0.0.0.0", "--port", str(fake_runner))
    assert check.main(_cmdline(tmp_path, *serve, "--token-file", str(token_file))) == 0
    token_file.write_text("wrong-token-wrong-token-wrong")
    assert check.main(_cmdline(tmp_path, *serve, "--token-file", str(token_file))) == 1  # 401 with a token
    assert check.main(_cmdline(tmp_path, *serve, "--token-stdin")) == 0  # no token to show: 401 = serving
    assert check.main(_cmdline(tmp_path, *serve, "--token-file", str(tmp_path / "missing"))) == 0
    assert check.main(_cmdline(tmp_path, "--host", "127.0.0.1", "--port", "1")) == 1  # nothing listening
    assert check.main(_cmdline(tmp_path, "--help")) == 1  # not a serving runner


def test_runner_healthcheck_unix_socket(tmp_path):
    import socketserver

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    class Handler(_Runner):
        def address_string(self):
            return "uds"

    path = str(tmp_path / "runner.sock")
    server = Server(path, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN)
        argv = _cmdline(tmp_path, "--uds", path, "--token-file", str(token_file))
        assert _load_healthcheck().main(argv) == 0
    finally:
        server.shutdown()
        server.server_close()


def _gunicorn_settings(monkeypatch, tmp_path, **env):
    for name in (
        "SECURE_AGENT_WORKERS",
        "WEB_CONCURRENCY",
        "SECURE_AGENT_LIMITS__KEEP_ALIVE_TIMEOUT_S",
        "SECURE_AGENT_MAX_REQUESTS",
        "SECURE_AGENT_MAX_REQUESTS_JITTER",
        "SECURE_AGENT_GRACEFUL_TIMEOUT_S",
        "SECURE_AGENT_RUNNER__BACKEND",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("SECURE_AGENT_DATA_DIR", str(tmp_path / "data"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "services" / "mcp-api" / "gunicorn.conf.py"))


def test_gunicorn_defaults(monkeypatch, tmp_path):
    conf = _gunicorn_settings(monkeypatch, tmp_path, SECURE_AGENT_RUNNER__BACKEND="kubernetes")
    assert 2 <= conf["workers"] <= 8 and conf["workers"] == min(max(conf["usable_cpus"](), 2), 8)
    assert conf["keepalive"] == 75 > 60  # outlives a 60 s load-balancer idle timeout
    assert conf["max_requests"] == 10_000 and conf["max_requests_jitter"] == 1_000
    assert conf["graceful_timeout"] == 25 < 30 and conf["timeout"] == 120
    assert conf["worker_class"] == "mcp_api.security.server.SecureUvicornWorker"


def test_local_runners_default_to_one_worker(monkeypatch, tmp_path):
    """Each worker keeps its own runners and their background jobs: with several, job_output could
    land on a worker that never saw the job."""
    local = _gunicorn_settings(monkeypatch, tmp_path)
    assert local["workers"] == 1
    # Recycling the only worker would restart the service and end every background job.
    assert local["max_requests"] == 0 and local["max_requests_jitter"] == 0
    assert _gunicorn_settings(monkeypatch, tmp_path, SECURE_AGENT_WORKERS="2")["workers"] == 2


def test_gunicorn_overrides(monkeypatch, tmp_path):
    conf = _gunicorn_settings(
        monkeypatch, tmp_path, SECURE_AGENT_WORKERS="3", SECURE_AGENT_LIMITS__KEEP_ALIVE_TIMEOUT_S="650",
        SECURE_AGENT_MAX_REQUESTS="0", SECURE_AGENT_GRACEFUL_TIMEOUT_S="5",
    )  # fmt: skip
    assert conf["workers"] == 3 and conf["keepalive"] == 650
    assert conf["max_requests"] == 0 and conf["max_requests_jitter"] == 0 and conf["graceful_timeout"] == 5
    monkeypatch.setenv("WEB_CONCURRENCY", "5")
    monkeypatch.delenv("SECURE_AGENT_WORKERS")
    assert runpy.run_path(str(ROOT / "services" / "mcp-api" / "gunicorn.conf.py"))["workers"] == 5


def test_usable_cpus_honours_a_cgroup_quota(monkeypatch, tmp_path):
    conf = _gunicorn_settings(monkeypatch, tmp_path)
    usable_cpus = conf["usable_cpus"]
    real_open = open
    files = {"/sys/fs/cgroup/cpu.max": "150000 100000\n"}

    def fake_open(path, *args, **kwargs):
        if path in files:
            import io

            return io.StringIO(files[path])
        if str(path).startswith("/sys/fs/cgroup/"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert usable_cpus() == 2  # 1.5 CPUs of quota -> 2
    files.clear()
    files.update(
        {"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "300000", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000"}
    )
    assert usable_cpus() == 3  # cgroup v1
    files["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"] = "-1"
    assert usable_cpus() == 16  # no quota: the affinity mask
