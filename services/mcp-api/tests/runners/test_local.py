"""The local runner backend: one runner process per workspace, started on demand, reaped when idle."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest
from agent_runner import protocol as p
from mcp_api.runners.base import RunnerStartError, WorkspaceNameError
from mcp_api.runners.local import LocalRunnerBackend
from mcp_api.settings import RunnerSettings

pytestmark = pytest.mark.anyio


@pytest.fixture
async def backend(tmp_path):
    b = LocalRunnerBackend(
        tmp_path / "ws", tmp_path / "run", RunnerSettings(idle_timeout_s=60, max_runners=2)
    )
    yield b
    await b.aclose()


async def test_one_runner_per_workspace_reused(backend, tmp_path):
    a1 = await backend.client_for("t1", "default")
    a2 = await backend.client_for("t1", "default")
    b = await backend.client_for("t1", "other")
    assert a1 is a2 and a1 is not b
    await a1.call("files/write", p.WriteFileRequest(path="x.txt", content="x"))
    assert (tmp_path / "ws" / "t1" / "default" / "x.txt").read_text() == "x"
    assert await backend.list_workspaces("t1") == ["default", "other"]
    assert await backend.list_workspaces("nobody") == []
    status = await backend.status()
    assert status.healthy and status.runners == 2


async def test_concurrent_first_calls_start_one_runner(backend):
    clients = await asyncio.gather(*(backend.client_for("t", "w") for _ in range(5)))
    assert len({id(c) for c in clients}) == 1
    assert (await backend.status()).runners == 1


async def test_dead_runner_is_replaced(backend):
    client = await backend.client_for("t", "w")
    runner = backend._runners[("t", "w")]
    runner.process.kill()
    await runner.process.wait()
    fresh = await backend.client_for("t", "w")
    assert fresh is not client
    assert (await fresh.health()).status == "ok"


async def test_least_recently_used_runner_is_evicted_at_the_cap(backend):
    await backend.client_for("t", "a")
    await backend.client_for("t", "b")
    backend._runners[("t", "a")].last_used = time.monotonic() - 100
    await backend.client_for("t", "c")
    assert set(backend._runners) == {("t", "b"), ("t", "c")}


async def test_idle_runners_are_reaped(tmp_path):
    backend = LocalRunnerBackend(tmp_path / "ws", tmp_path / "run", RunnerSettings(idle_timeout_s=0.2))
    try:
        await backend.client_for("t", "w")
        process = backend._runners[("t", "w")].process
        for _ in range(50):
            if not backend._runners:
                break
            await asyncio.sleep(0.1)
        assert not backend._runners
        # Removed from the table first, then terminated: the process must be gone shortly after.
        await asyncio.wait_for(process.wait(), 5)
    finally:
        await backend.aclose()


async def test_bad_workspace_name(backend):
    with pytest.raises(WorkspaceNameError, match="workspace '../x' is invalid"):
        await backend.client_for("t", "../x")


async def test_runner_that_exits_fails_fast(backend, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")
    backend.settings.start_timeout_s = 30
    started = time.monotonic()
    with pytest.raises(RunnerStartError, match="did not start"):
        await backend.client_for("t", "w")
    assert time.monotonic() - started < 5


async def test_long_data_dir_gets_a_private_socket_dir(tmp_path):
    deep = tmp_path / ("d" * 90)
    backend = LocalRunnerBackend(tmp_path / "ws", deep / "run", RunnerSettings())
    try:
        assert len(str(backend.run_dir)) < 80
        assert oct(backend.run_dir.stat().st_mode & 0o777) == "0o700"
        assert (await (await backend.client_for("t", "w")).health()).status == "ok"
    finally:
        await backend.aclose()


async def test_per_tenant_runner_cap(tmp_path, monkeypatch):
    from mcp_api.runners import local
    from mcp_api.runners.base import RunnerLimitError

    backend = LocalRunnerBackend(tmp_path / "ws", tmp_path / "run", RunnerSettings(), max_per_tenant=2)
    try:
        await backend.client_for("t", "a")
        await backend.client_for("t", "b")
        await backend.client_for("other", "a")  # other tenants are not affected
        with pytest.raises(RunnerLimitError, match="already has 2 active workspaces"):
            await backend.client_for("t", "c")
        # A runner idle past the slot time gives its place up.
        backend._runners[("t", "a")].last_used = time.monotonic() - local.TENANT_SLOT_IDLE_S - 1
        await backend.client_for("t", "c")
        assert {k for k in backend._runners if k[0] == "t"} == {("t", "b"), ("t", "c")}
    finally:
        await backend.aclose()


def test_sockets_of_gone_processes_are_swept_and_live_ones_kept(tmp_path):
    # Socket names carry the owning mcp-api process (gunicorn workers each own their runners); a
    # crashed process leaves its sockets behind, and only those may be removed.
    import subprocess

    from mcp_api.runners.local import _sweep_dead_sockets

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    parent = os.getppid()  # alive, and not this process
    names = {
        "dead": f"{'a' * 16}.{gone.pid}.sock",
        "alive": f"{'b' * 16}.{parent}.sock",
        "ours": f"{'c' * 16}.{os.getpid()}.sock",
        "other": "unrelated.sock",
    }
    for name in names.values():
        (tmp_path / name).touch()
    _sweep_dead_sockets(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in names.items() if k != "dead")
