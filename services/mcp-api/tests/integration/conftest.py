"""Start the real mcp-api server as a subprocess for integration tests.

``live_server(env_overrides)`` starts ``python -m mcp_api serve`` on a free port with its own data
dir and a fixed dev API key, waits for ``GET /health`` to answer 200, and stops it (SIGTERM, then
SIGKILL) when the test ends. The server's output goes to a log file that is attached to the report
of a failing test.

Placeholder until the shared ``live_server`` fixture lands; tests only rely on the returned
object's ``url``, ``api_key`` and ``workspace_dir``.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

# sa_<12 letters or digits>_<20-128 url-safe characters> (mcp_api.auth.api_keys.KEY_RE)
DEV_API_KEY = "sa_integration1_" + "Xq7-pL2_vN9kR4tY8wZ3mB6cF1hJ5sD0"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass
class LiveServer:
    url: str  # http://localhost:PORT/mcp (localhost: the conformance DNS-rebinding check needs it)
    base_url: str  # http://localhost:PORT
    api_key: str
    data_dir: Path
    workspace_dir: Path  # the dev tenant's default workspace
    log_path: Path
    process: subprocess.Popen

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no server log: {exc}>"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Attach the logs of the servers a failing test started to its report."""
    outcome = yield
    report = outcome.get_result()
    servers: list[LiveServer] = getattr(item, "_live_servers", [])
    if report.failed and servers:
        for server in servers:
            report.sections.append((f"mcp-api server log ({server.log_path})", server.log_text()))


@pytest.fixture
def server_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []
    request.node._live_servers = started

    def start(env_overrides: dict[str, str] | None = None) -> LiveServer:
        port = _free_port()
        root = tmp_path_factory.mktemp("live-server")
        data_dir = root / "data"
        data_dir.mkdir()
        log_path = root / "server.log"
        # Hermetic: no SECURE_AGENT_* from the developer's shell, no .env from the repo (cwd=root).
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SECURE_AGENT_")},
            "SECURE_AGENT_PORT": str(port),
            "SECURE_AGENT_DATA_DIR": str(data_dir),
            "SECURE_AGENT_DEV_API_KEY": DEV_API_KEY,
            "PYTHONUNBUFFERED": "1",
            **(env_overrides or {}),
        }
        log = open(log_path, "wb")  # noqa: SIM115 - closed with the process below
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcp_api", "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            start_new_session=True,
        )
        log.close()
        base_url = f"http://localhost:{port}"
        server = LiveServer(
            url=f"{base_url}/mcp",
            base_url=base_url,
            api_key=DEV_API_KEY,
            data_dir=data_dir,
            workspace_dir=data_dir / "workspaces" / "dev" / "default",
            log_path=log_path,
            process=proc,
        )
        started.append(server)

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(
                    f"server exited with {proc.returncode} before /health answered\n{server.log_text()}"
                )
            try:
                r = httpx.get(f"{base_url}/health", timeout=2.0)
                if r.status_code == 200:
                    return server
                last_error = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last_error = repr(exc)
            time.sleep(0.2)
        _stop(proc)
        pytest.fail(
            f"/health did not answer 200 within {STARTUP_TIMEOUT_S:.0f}s ({last_error})\n{server.log_text()}"
        )

    yield start
    for server in started:
        _stop(server.process)


@pytest.fixture
def live_server(server_factory: Callable[..., LiveServer]) -> Callable[..., LiveServer]:
    """``live_server(env_overrides) -> LiveServer`` (url, api_key, workspace_dir)."""
    return server_factory
