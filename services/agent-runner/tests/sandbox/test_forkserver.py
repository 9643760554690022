"""The fork server and supervisors: nothing outlives its command, whatever dies first."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time

import pytest
from agent_runner.sandbox.forkserver import descendants
from agent_runner.sandbox.spawn import get_forkserver, run_command

pytestmark = pytest.mark.anyio


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


async def test_cancelled_request_kills_the_command(policy, helpers):
    tag = f"{secrets.randbelow(10**6):06d}"
    task = asyncio.ensure_future(run_command(policy, shell=f"setsid sleep 1000.{tag}1 & sleep 1000.{tag}2"))
    await asyncio.sleep(0.5)
    assert helpers.survivors(f"1000.{tag}")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert helpers.wait_no_survivors(f"1000.{tag}", timeout=6) == []


async def test_killed_supervisor_takes_its_command_along(policy, helpers):
    tag = f"{secrets.randbelow(10**6):06d}"
    task = asyncio.ensure_future(
        run_command(
            policy, shell=f"setsid sleep 1000.{tag}1 > /dev/null 2>&1 & sleep 1000.{tag}2", timeout_s=30
        )
    )
    await asyncio.sleep(0.5)
    server = get_forkserver().pid
    supervisors = [
        pid for pid in descendants(server) if os.readlink(f"/proc/{pid}/exe") and _ppid(pid) == server
    ]
    assert supervisors
    for pid in supervisors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    result = await asyncio.wait_for(task, 10)
    assert result.signal == "SIGKILL"
    assert helpers.wait_no_survivors(f"1000.{tag}") == []


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except OSError:
        return -1  # already gone


async def test_fork_server_is_restarted_when_it_dies(policy):
    assert (await run_command(policy, ["true"])).exit_code == 0
    old = get_forkserver().pid
    os.kill(old, signal.SIGKILL)
    assert _wait_for(lambda: get_forkserver().pid != old)
    result = await run_command(policy, ["echo", "again"])
    assert result.stdout == "again\n"
    assert get_forkserver().pid not in (None, old)


async def test_a_dead_warm_supervisor_is_replaced(policy):
    assert (await run_command(policy, ["true"])).exit_code == 0  # leaves a warm supervisor behind
    server = get_forkserver().pid
    idle = [pid for pid in descendants(server) if _ppid(pid) == server]
    assert idle  # the warm supervisor waiting for this policy's next command
    for pid in idle:
        with contextlib.suppress(ProcessLookupError):  # the last command's supervisor may be leaving
            os.kill(pid, signal.SIGKILL)
    assert _wait_for(lambda: not [p for p in descendants(server) if p in idle])
    result = await run_command(policy, ["echo", "cold start"])
    assert result.stdout == "cold start\n"
