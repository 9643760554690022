"""Background commands through /mcp against a real runner: run_command(background=true),
job_output by offset, job_kill of the whole tree, the cap on running jobs, and jobs dying with
their workspace runner (stopped, or killed outright)."""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

import anyio
import httpx
import pytest
from mcp_api.settings import Settings
from mcp_helpers import TEST_KEY, Mcp, survivors

pytestmark = pytest.mark.anyio

MAX_OUTPUT = 16 * 1024
MAX_JOBS = 4  # agent_runner.commands.MAX_JOBS


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        dev_api_key=TEST_KEY,
        runner={"idle_timeout_s": 60},
        sandbox={"max_output_bytes": MAX_OUTPUT, "timeout_s": 10, "max_timeout_s": 20, "cpu_seconds": 2},
    )


@pytest.fixture
def client(http: httpx.AsyncClient) -> Mcp:
    return Mcp(http=http)


async def start(client: Mcp, **arguments) -> str:
    result = await client.call("run_command", background=True, **arguments)
    assert not result.get("isError"), result
    structured = result["structuredContent"]
    assert structured["status"] == "started" and structured["result"] is None
    job_id = structured["job_id"]
    assert job_id.startswith("job-")
    assert f"job_output(job_id='{job_id}')" in result["content"][0]["text"]
    return job_id


async def output(client: Mcp, job_id: str, since_offset: int = 0) -> dict:
    result = await client.call("job_output", job_id=job_id, since_offset=since_offset)
    assert not result.get("isError"), result
    return result["structuredContent"]


async def until_finished(client: Mcp, job_id: str, since: int = 0) -> tuple[str, dict]:
    text = ""
    with anyio.fail_after(15):
        while True:
            out = await output(client, job_id, since)
            text += out["output"]
            since = out["next_offset"]
            if out["finished"]:
                return text, out
            await anyio.sleep(0.05)


async def eventually(check, within: float = 5.0):
    """Poll `check()` until it is true (its value is returned) or `within` seconds have passed
    (its last value is returned)."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        await anyio.sleep(0.02)


async def wait_no_survivors(marker: str) -> list[int]:
    return survivors(marker) if not await eventually(lambda: not survivors(marker)) else []


async def wait_running(marker: str, count: int) -> None:
    assert await eventually(lambda: len(survivors(marker)) >= count), f"{count} processes with {marker}"


async def test_job_output_is_read_by_offset_until_the_job_ends(mcp):
    job_id = await start(mcp, shell="for i in 1 2 3; do echo line $i; sleep 0.2; done; echo oops >&2; exit 4")
    first = await output(mcp, job_id)
    with anyio.fail_after(5):
        while not first["output"]:
            await anyio.sleep(0.02)
            first = await output(mcp, job_id)
    assert first["output"].startswith("line 1\n") and first["finished"] is False and first["result"] is None
    rest, final = await until_finished(mcp, job_id, first["next_offset"])
    assert first["output"] + rest == "line 1\nline 2\nline 3\noops\n"
    assert final["result"]["exit_code"] == 4 and final["result"]["stderr"] == "oops\n"
    assert final["next_offset"] == len("line 1\nline 2\nline 3\noops\n")
    again = await output(mcp, job_id, final["next_offset"])
    assert again["output"] == "" and again["finished"] is True


async def test_job_buffer_keeps_the_end_and_says_what_was_dropped(client):
    job_id = await start(client, command=["python3", "-c", "print('x' * 50000); print('END')"])
    text, final = await until_finished(client, job_id)
    assert final["next_offset"] == 50005
    assert (await output(client, job_id, 0))["dropped_bytes"] == 50005 - MAX_OUTPUT
    assert "bytes dropped" in text and text.endswith("END\n")


async def test_job_kill_takes_the_whole_tree(client):
    tag = f"{secrets.randbelow(10**6):06d}"
    job_id = await start(client, shell=f"setsid sleep 1000.{tag}1 & sleep 1000.{tag}2")
    await wait_running(f"1000.{tag}", 2)
    killed = await client.call("job_kill", job_id=job_id)
    assert not killed.get("isError"), killed
    assert killed["structuredContent"]["killed"] is True
    assert killed["structuredContent"]["result"]["signal"] == "SIGKILL"
    assert await wait_no_survivors(f"1000.{tag}") == []  # the setsid grandchild too
    assert (await output(client, job_id))["finished"] is True
    twice = await client.call("job_kill", job_id=job_id)
    assert twice["structuredContent"]["killed"] is False  # already over: idempotent


async def test_a_job_has_a_wall_clock_limit(client):
    job_id = await start(client, command=["sleep", "30"], timeout_s=0.5)
    _, final = await until_finished(client, job_id)
    assert final["result"]["limits_hit"] == ["timeout"]
    assert final["result"]["signal"] == "SIGKILL"


async def test_running_jobs_are_capped(client):
    tag = f"{secrets.randbelow(10**6):06d}"
    ids = [await start(client, command=["sleep", f"1000.{tag}"]) for _ in range(MAX_JOBS)]
    over = await client.call("run_command", command=["sleep", f"1000.{tag}"], background=True)
    assert over["isError"] is True
    text = over["content"][0]["text"]
    assert "[limit_reached]" in text and f"at most {MAX_JOBS} background jobs may run at once" in text
    # Foreground commands are not jobs: still allowed.
    foreground = await client.call("run_command", command=["true"])
    assert foreground["structuredContent"]["result"]["exit_code"] == 0
    await client.call("job_kill", job_id=ids[0])
    ids.append(await start(client, command=["sleep", f"1000.{tag}"]))  # a slot is free again
    for job_id in ids[1:]:
        await client.call("job_kill", job_id=job_id)
    assert await wait_no_survivors(f"1000.{tag}") == []


async def test_unknown_job_and_other_tenants_jobs_are_not_found(app, http, client):
    job_id = await start(client, command=["sleep", "5"])
    missing = await client.call("job_output", job_id="job-000000000000")
    assert missing["isError"] is True and "[not_found]" in missing["content"][0]["text"]
    key, _ = await app.state.services.keys.create("other", "o", ["exec"])
    other = Mcp(http=http, key=key)
    for tool in ("job_output", "job_kill"):
        stolen = await other.call(tool, job_id=job_id)
        assert stolen["isError"] is True and "[not_found]" in stolen["content"][0]["text"], tool
    assert (await output(client, job_id))["finished"] is False  # untouched
    await client.call("job_kill", job_id=job_id)


async def test_jobs_die_when_their_runner_is_stopped(app, client):
    tag = f"{secrets.randbelow(10**6):06d}"
    job_id = await start(client, shell=f"setsid sleep 1000.{tag}1 & sleep 1000.{tag}2")
    await wait_running(f"1000.{tag}", 2)
    backend = app.state.services.runners
    await backend._stop(("dev", "default"))  # what the idle reaper and eviction do
    assert await wait_no_survivors(f"1000.{tag}") == []
    gone = await client.call("job_output", job_id=job_id)  # a new runner knows no such job
    assert gone["isError"] is True and "[not_found]" in gone["content"][0]["text"]


async def test_jobs_die_when_their_runner_is_killed(app, client):
    tag = f"{secrets.randbelow(10**6):06d}"
    job_id = await start(client, shell=f"setsid sleep 1000.{tag}1 & sleep 1000.{tag}2")
    await wait_running(f"1000.{tag}", 2)
    runner = app.state.services.runners._runners[("dev", "default")].process
    os.kill(runner.pid, signal.SIGKILL)  # no chance to clean up: the fork server sees EOF
    await runner.wait()
    assert await wait_no_survivors(f"1000.{tag}") == []
    gone = await client.call("job_output", job_id=job_id)
    assert gone["isError"] is True and "[not_found]" in gone["content"][0]["text"]
    assert app.state.services.runners._runners[("dev", "default")].process.pid != runner.pid
