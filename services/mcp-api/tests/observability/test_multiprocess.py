"""gunicorn with 2 uvicorn workers (services/mcp-api/gunicorn.conf.py): /metrics sums every worker's
counters, whichever worker answers the scrape, and every log line is JSON."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
KEY = "sa_multiproc001_" + "Mp4-kL9_qR2sT7vX1yZ6aB3c"
REQUESTS = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gunicorn_workers_metrics_are_summed(tmp_path: Path):
    port = _free_port()
    metrics_dir = tmp_path / "metrics"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SECURE_AGENT_")},
        "SECURE_AGENT_PORT": str(port),
        "SECURE_AGENT_DATA_DIR": str(tmp_path / "data"),
        "SECURE_AGENT_DEV_API_KEY": KEY,
        "SECURE_AGENT_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    log_path = tmp_path / "gunicorn.log"
    gunicorn = [sys.executable, "-c", "from gunicorn.app.wsgiapp import run; run()"]
    proc = subprocess.Popen(
        [*gunicorn, "-c", str(CONFIG)], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        booted: set[str] = set()
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            booted = set(re.findall(r"Booting worker with pid: (\d+)", log_path.read_text()))
            try:
                if len(booted) == 2 and httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"gunicorn did not start:\n{log_path.read_text()}")
        time.sleep(1.0)  # both workers past their lifespan startup
        # New connections each time, so the kernel spreads them over both workers.
        for _ in range(REQUESTS):
            response = httpx.post(
                f"{base}/mcp", json={}, headers={"authorization": "Bearer sa_nope00000000_" + "x" * 24,
                                                 "content-type": "application/json"}, timeout=10,
            )  # fmt: skip
            assert response.status_code == 401
        pids_with_samples = {p.name.split("_")[-1].split(".")[0] for p in metrics_dir.glob("counter_*.db")}
        assert len(pids_with_samples & booted) == 2, (pids_with_samples, booted)
        for _ in range(6):  # whichever worker answers, the total is the sum over both
            text = httpx.get(f"{base}/metrics", timeout=10).text
            match = re.search(r'^secure_agent_auth_failures_total\{reason="invalid"\} (\S+)$', text, re.M)
            assert match and float(match.group(1)) == REQUESTS, text[:2000]
            assert re.search(r'^http_requests_total\{handler="/mcp",method="POST",status="4xx"\} 60.0$', text, re.M)
            # livesum gauges: each worker's capacity adds up
            assert re.search(r'^secure_agent_runner_pool_capacity\{backend="local"\} 128.0$', text, re.M)
        # Both workers start a runner for the same workspace, each its own (a shared socket name made
        # one worker's runner replace the other's: 401s and "runner unavailable" under load).
        results = asyncio.run(_concurrent_reads(base, 48))
        failures = [r for r in results if r.get("isError")]
        assert not failures, failures[:3]
        sockets = _runner_sockets(tmp_path / "data")
        assert len({Path(path).name.split(".")[1] for path in sockets} & booted) == 2, (sockets, booted)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log_path.read_text().splitlines()
    # The first-start banner is printed (not logged) before the master listens; after it, only JSON.
    start = next(i for i, line in enumerate(text) if "Listening at" in line)
    records = [json.loads(line) for line in text[start:] if line.strip()]
    loggers = {r["logger"] for r in records}
    assert {"gunicorn.error", "uvicorn.error", "mcp_api.access", "mcp_api.auth.middleware"} <= loggers, loggers
    # The workers' runners (children, sharing the output) write JSON lines of their own service.
    assert {r["service"] for r in records} == {"mcp-api", "agent-runner"}


async def _concurrent_reads(base: str, n: int) -> list[dict]:
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json", "accept": "application/json",
               "mcp-protocol-version": "2025-11-25"}  # fmt: skip

    def body(tool: str, arguments: dict, i: int) -> dict:
        return {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}

    async def call(tool: str, arguments: dict, i: int) -> dict:
        # A client per call: a new connection each time, so the kernel spreads them over both workers.
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(f"{base}/mcp", json=body(tool, arguments, i), headers=headers)
            assert response.status_code == 200, response.text
            return response.json()["result"]

    written = await call("write_file", {"path": "shared.txt", "content": "both workers\n"}, 0)
    assert not written.get("isError"), written
    return list(await asyncio.gather(*(call("read_file", {"path": "shared.txt"}, i) for i in range(1, n + 1))))


def _runner_sockets(data_dir: Path) -> list[str]:
    """The --uds paths of the runners serving workspaces under `data_dir` (the socket directory is a
    temporary one when the data dir's path is too long for a socket name)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agent_runner" in argv and b"--uds" in argv and any(str(data_dir).encode() in a for a in argv):
            found.append(argv[argv.index(b"--uds") + 1].decode())
    return found
