"""Background jobs: output by offset, kill, the cap on their number, shutdown."""

from __future__ import annotations

import secrets

import anyio
import pytest
from agent_runner.sandbox.jobs import JobManager, JobNotFound, OutputRing, _complete_utf8
from agent_runner.sandbox.spawn import CommandRejected

pytestmark = pytest.mark.anyio


async def _until_finished(jobs: JobManager, job_id: str, since: int = 0) -> tuple[str, int]:
    text = ""
    with anyio.fail_after(20):
        while True:
            out = await jobs.output(job_id, since, wait_s=1)
            text += out.chunk
            since = out.next_offset
            if out.finished:
                return text, since


async def test_output_is_read_by_offset_until_the_job_ends(policy):
    jobs = JobManager(policy)
    job_id = await jobs.start(shell="for i in 1 2 3; do echo line $i; sleep 0.1; done; echo oops >&2; exit 4")
    first = await jobs.output(job_id, 0, wait_s=5)
    assert first.chunk.startswith("line 1") and not first.finished and first.result is None
    rest, end = await _until_finished(jobs, job_id, first.next_offset)
    assert first.chunk + rest == "line 1\nline 2\nline 3\noops\n"
    final = await jobs.output(job_id, end)
    assert final.chunk == "" and final.finished
    assert final.result.exit_code == 4 and final.result.stderr == "oops\n"
    assert jobs.summaries()[0]["exit_code"] == 4
    await jobs.aclose()


async def test_kill_takes_the_whole_tree(policy, helpers):
    tag = f"{secrets.randbelow(10**6):06d}"
    jobs = JobManager(policy)
    job_id = await jobs.start(shell=f"setsid sleep 1000.{tag}1 & sleep 1000.{tag}2")
    await anyio.sleep(0.2)
    assert helpers.survivors(f"1000.{tag}")
    result = await jobs.kill(job_id)
    assert result is not None and result.signal == "SIGKILL"
    assert helpers.wait_no_survivors(f"1000.{tag}") == []
    assert (await jobs.output(job_id)).finished
    await jobs.aclose()


async def test_number_of_running_jobs_is_capped(policy):
    jobs = JobManager(policy, max_jobs=2)
    ids = [await jobs.start(["sleep", "30"]) for _ in range(2)]
    with pytest.raises(CommandRejected, match="at most 2 background jobs"):
        await jobs.start(["sleep", "30"])
    await jobs.kill(ids[0])
    ids.append(await jobs.start(["sleep", "30"]))  # a slot is free again
    await jobs.aclose()
    assert all(not s["running"] for s in jobs.summaries())
    with pytest.raises(CommandRejected, match="shut down"):
        await jobs.start(["true"])


async def test_aclose_kills_running_jobs(policy, helpers):
    tag = f"{secrets.randbelow(10**6):06d}"
    jobs = JobManager(policy)
    await jobs.start(["sleep", f"1000.{tag}"])
    await jobs.aclose()
    assert helpers.wait_no_survivors(f"1000.{tag}") == []


async def test_a_job_has_a_wall_clock_limit(policy):
    jobs = JobManager(policy)
    job_id = await jobs.start(["sleep", "30"], timeout_s=0.5)
    await _until_finished(jobs, job_id)
    result = (await jobs.output(job_id)).result
    assert result.limits_hit == ["timeout"]
    await jobs.aclose()


async def test_unknown_job_and_bad_requests(policy):
    jobs = JobManager(policy)
    with pytest.raises(JobNotFound):
        await jobs.output("job-nope")
    with pytest.raises(JobNotFound):
        await jobs.kill("job-nope")
    with pytest.raises(CommandRejected, match="exactly one"):
        await jobs.start()
    job_id = await jobs.start(["true"])
    with pytest.raises(CommandRejected, match="since_offset"):
        await jobs.output(job_id, -1)
    await jobs.aclose()


async def test_buffer_keeps_the_end_and_says_what_was_dropped(make_policy):
    policy = make_policy(max_output_bytes=4096)
    jobs = JobManager(policy)
    job_id = await jobs.start(["python3", "-c", "print('x' * 10000); print('END')"])
    text, end = await _until_finished(jobs, job_id)
    assert end == 10005
    assert (await jobs.output(job_id, 0)).dropped_bytes == 10005 - 4096
    assert text.startswith("[... ") and "bytes dropped" in text
    assert text.endswith("END\n")
    await jobs.aclose()


def test_ring_offsets():
    ring = OutputRing(8)
    ring.append(b"abcdef")
    assert ring.read(0, True) == (b"abcdef", 6, 0)
    ring.append(b"ghijkl")
    assert ring.read(2, True) == (b"efghijkl", 12, 2)
    assert ring.read(10, True) == (b"kl", 12, 0)
    assert ring.read(99, True) == (b"", 12, 0)


def test_incomplete_utf8_is_held_back():
    euro = "€".encode()  # 3 bytes
    assert _complete_utf8(b"ab" + euro[:2]) == 2
    assert _complete_utf8(b"ab" + euro) == 5
    assert _complete_utf8(b"ab") == 2
    assert _complete_utf8(b"") == 0
    ring = OutputRing(64)
    ring.append(b"a" + euro[:1])
    assert ring.read(0, complete=False) == (b"a", 1, 0)
    ring.append(euro[1:])
    assert ring.read(1, complete=False) == (euro, 4, 0)
