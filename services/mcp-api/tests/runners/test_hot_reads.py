"""mcp-api's hot reads never serve stale content, and never serve what the runner would refuse.

A real local runner per test. Each staleness scenario reads a file until mcp-api answers it without
the runner (a hit, proven by the hit count and, once, by a stopped runner), changes the file, and
reads it again: write_file through the runner, a command, an in-place rewrite of the same size with
the old mtime forced back, a same-size file renamed over it, a symlink swapped in, a deletion.
`test_the_staleness_tests_catch_an_identity_without_ctime` shows the rewrite scenario DOES return
stale content once ctime is left out of the identity.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import sys
import threading
from pathlib import Path

import pytest
from agent_runner import protocol as p
from agent_runner.client import RunnerClient, RunnerError, RunnerUnavailable
from agent_runner.workspace import read_cache, syscalls
from mcp_api.runners import hot_reads
from mcp_api.runners.hot_reads import HotReadClient
from mcp_api.runners.local import LocalRunnerBackend
from mcp_api.settings import RunnerSettings
from prometheus_client import REGISTRY
from pydantic import ValidationError

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

OLD, NEW = "A" * 64 + "\n", "B" * 64 + "\n"
HOT_READS = "secure_agent_runner_hot_reads_total"


@pytest.fixture
async def backend(tmp_path, monkeypatch):
    # mcp-api counts a file as settled 30 ms after its last change (a kernel tick is at most 10 ms);
    # the runner process keeps its own default.
    monkeypatch.setattr(read_cache, "SETTLE_NS", 30_000_000)
    b = LocalRunnerBackend(tmp_path / "ws", tmp_path / "run", RunnerSettings())
    yield b
    await b.aclose()


@pytest.fixture
async def client(backend):
    c = await backend.client_for("t", "w")
    assert isinstance(c, HotReadClient)
    return c


@pytest.fixture
def root(backend, client) -> Path:
    return backend.workspace_dir("t", "w")


async def settle() -> None:
    await asyncio.sleep(0.04)


async def read(client: RunnerClient, path: str = "f.txt", **window) -> str:
    return (await client.call("files/read", p.ReadFileRequest(path=path, **window))).content


async def hot_read(client: RunnerClient, backend: LocalRunnerBackend, path: str = "f.txt") -> str:
    """Read until mcp-api answers without the runner: the second read must be a hit."""
    first = await read(client, path)
    hits = backend.hot_reads.hits
    assert await read(client, path) == first
    assert backend.hot_reads.hits == hits + 1, "the read was not answered by mcp-api"
    return first


def rewrite_same_size_same_mtime(path: Path) -> None:
    before = path.stat()
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(NEW.encode())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert after.st_ctime_ns != before.st_ctime_ns


async def test_a_hit_does_not_reach_the_runner(backend, client, root) -> None:
    (root / "f.txt").write_text(OLD)
    await settle()
    assert await hot_read(client, backend) == OLD
    runner = backend._runners[("t", "w")].process
    runner.send_signal(signal.SIGSTOP)
    try:
        result = await client.call("files/read", {"path": "f.txt"}, request_timeout=2)
        assert result.content == OLD and result.path == "f.txt"
        with pytest.raises(RunnerUnavailable):  # anything else does wait for the stopped runner
            await client.call("files/read", {"path": "f.txt", "offset": 1}, request_timeout=0.3)
    finally:
        runner.send_signal(signal.SIGCONT)


async def test_a_hit_hands_out_one_frozen_answer(backend, client, root) -> None:
    (root / "f.txt").write_text(OLD)
    await settle()
    counted = {r: REGISTRY.get_sample_value(HOT_READS, {"result": r}) for r in ("hit", "miss")}
    first = await client.call("files/read", {"path": "f.txt"})
    assert type(first) is p.ReadFileResult  # the runner's own answer: the caller's to keep
    hits = [await client.call("files/read", {"path": "f.txt"}) for _ in range(2)]
    assert REGISTRY.get_sample_value(HOT_READS, {"result": "hit"}) == counted["hit"] + 2
    assert REGISTRY.get_sample_value(HOT_READS, {"result": "miss"}) == counted["miss"] + 1
    assert hits[0] is hits[1] and isinstance(hits[0], hot_reads.SharedReadFileResult)
    assert hits[0].model_dump() == first.model_dump()
    with pytest.raises(ValidationError):
        hits[0].content = NEW


async def test_write_file_then_read(backend, client, root) -> None:
    (root / "f.txt").write_text(OLD)
    await settle()
    assert await hot_read(client, backend) == OLD
    await client.call("files/write", p.WriteFileRequest(path="f.txt", content=NEW))
    assert await read(client) == NEW
    await settle()
    assert await hot_read(client, backend) == NEW


async def test_a_command_changes_the_file_then_read(backend, client, root) -> None:
    (root / "f.txt").write_text(OLD)
    await settle()
    assert await hot_read(client, backend) == OLD
    result = await client.call("exec/run", p.RunCommandRequest(shell=f"printf '%s\\n' {NEW.strip()} > f.txt"))
    assert result.result is not None and result.result.exit_code == 0, result
    assert await read(client) == NEW


async def test_same_size_rewrite_with_the_old_mtime_then_read(backend, client, root) -> None:
    (root / "f.txt").write_text(OLD)
    await settle()
    assert await hot_read(client, backend) == OLD
    rewrite_same_size_same_mtime(root / "f.txt")
    assert await read(client) == NEW
    await settle()
    assert await hot_read(client, backend) == NEW  # settled: only ctime tells it from the old entry


async def test_the_staleness_tests_catch_an_identity_without_ctime(
    backend, client, root, monkeypatch
) -> None:
    monkeypatch.setattr(
        hot_reads, "stat_key", lambda st: (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, 0)
    )
    (root / "f.txt").write_text(OLD)
    await settle()
    assert await hot_read(client, backend) == OLD
    rewrite_same_size_same_mtime(root / "f.txt")
    await settle()
    assert await read(client) == OLD  # stale: what the real identity prevents


async def test_a_same_size_file_renamed_over_it_then_read(backend, client, root) -> None:
    (root / "f.txt").write_text(OLD)
    await settle()
    assert await hot_read(client, backend) == OLD
    old = (root / "f.txt").stat()
    (root / "g.txt").write_text(NEW)
    os.utime(root / "g.txt", ns=(old.st_atime_ns, old.st_mtime_ns))
    os.rename(root / "g.txt", root / "f.txt")
    await settle()
    assert await read(client) == NEW


async def test_a_symlink_swapped_in_is_refused_by_the_runner(backend, client, root, tmp_path) -> None:
    (root / "f.txt").write_text(OLD)
    (tmp_path / "secret.txt").write_text(NEW)
    await settle()
    assert await hot_read(client, backend) == OLD
    os.unlink(root / "f.txt")
    os.symlink(tmp_path / "secret.txt", root / "f.txt")
    with pytest.raises(RunnerError) as err:
        await read(client)
    assert err.value.code == p.ErrorCode.SYMLINK


async def test_a_deleted_file_is_not_found(backend, client, root) -> None:
    (root / "f.txt").write_text(OLD)
    await settle()
    assert await hot_read(client, backend) == OLD
    os.unlink(root / "f.txt")
    with pytest.raises(RunnerError) as err:
        await read(client)
    assert err.value.code == p.ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    ("path", "code"), [("../w/f.txt", p.ErrorCode.INVALID_PATH), ("/etc/passwd", p.ErrorCode.INVALID_PATH)]
)
async def test_paths_outside_the_workspace_get_the_runners_error(backend, client, root, path, code) -> None:
    (root / "f.txt").write_text(OLD)
    await settle()
    await hot_read(client, backend)
    with pytest.raises(RunnerError) as err:
        await read(client, path)
    assert err.value.code == code


async def test_windows_are_separate_entries_and_equivalent_paths_share_one(backend, client, root) -> None:
    (root / "d").mkdir()
    (root / "d" / "f.txt").write_text("one\ntwo\nthree\n")
    await settle()
    assert await hot_read(client, backend, "d/f.txt") == "one\ntwo\nthree\n"
    assert await read(client, "d/f.txt", offset=1, limit=1) == "two\n"
    assert await read(client, "d/f.txt", offset=1, limit=1) == "two\n"
    hits = backend.hot_reads.hits
    assert await read(client, "./d//f.txt") == "one\ntwo\nthree\n"
    assert backend.hot_reads.hits == hits + 1


async def test_only_settled_regular_files_are_kept(backend, client, root, monkeypatch) -> None:
    monkeypatch.setattr(read_cache, "SETTLE_NS", 1_000_000_000)  # the default
    (root / "f.txt").write_text(OLD)
    for _ in range(3):
        assert await read(client) == OLD
    assert backend.hot_reads.hits == 0
    os.mkfifo(root / "pipe")
    with pytest.raises(RunnerError) as err:
        await read(client, "pipe")
    assert err.value.code == p.ErrorCode.NOT_REGULAR


async def test_a_new_runner_starts_with_no_entries(backend, client, root) -> None:
    (root / "f.txt").write_text(OLD)
    await settle()
    await hot_read(client, backend)
    runner = backend._runners[("t", "w")].process
    runner.kill()
    await runner.wait()
    fresh = await backend.client_for("t", "w")
    assert fresh is not client
    hits = backend.hot_reads.hits
    assert await read(fresh) == OLD
    assert backend.hot_reads.hits == hits  # the old runner's entry is not this runner's


async def test_a_closed_client_serves_nothing_from_its_entries(backend, client, root) -> None:
    (root / "f.txt").write_text(OLD)
    await settle()
    await hot_read(client, backend)
    await backend.aclose()
    with pytest.raises(RunnerUnavailable):
        await read(client)


async def test_off_when_its_bound_is_zero(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(read_cache, "SETTLE_NS", 0)  # every file settled: only the bound keeps it off
    backend = LocalRunnerBackend(tmp_path / "ws", tmp_path / "run", RunnerSettings(hot_read_cache_bytes=0))
    try:
        client = await backend.client_for("t", "w")
        assert type(client) is RunnerClient
        (backend.workspace_dir("t", "w") / "f.txt").write_text(OLD)
        for _ in range(3):
            assert await read(client) == OLD
        assert backend.hot_reads.hits == 0
    finally:
        await backend.aclose()


async def test_a_directory_swapped_for_a_symlink_never_leaks_what_is_outside(
    backend, client, root, tmp_path
) -> None:
    """The symlink-swap race of agent-runner's tests/test_race.py, through mcp-api's hot reads: `d` (a
    directory holding f="inside") and `s` (a symlink to a directory outside holding f="SECRET") are
    exchanged in a tight loop while `d/f` is read. mcp-api answers some reads itself and the runner
    the rest; nothing from outside ever comes back, and both outcomes occur."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("SECRET-OUTSIDE")
    (root / "d").mkdir()
    (root / "d" / "f").write_text("inside")
    (root / "s").symlink_to(outside)
    await settle()
    stop = threading.Event()
    swaps = 0

    def swap() -> None:
        nonlocal swaps
        while not stop.is_set():
            syscalls.renameat2(syscalls.AT_FDCWD, str(root / "d"), syscalls.AT_FDCWD, str(root / "s"),
                               syscalls.RENAME_EXCHANGE)  # fmt: skip
            swaps += 1

    outcomes: collections.Counter = collections.Counter()

    async def reader(count: int) -> None:
        for _ in range(count):
            try:
                content = await read(client, "d/f")
            except RunnerError as exc:
                assert "SECRET" not in exc.message
                outcomes[exc.code] += 1
                continue
            assert content == "inside"
            outcomes["inside"] += 1

    hits = backend.hot_reads.hits
    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    try:
        await asyncio.gather(*(reader(300) for _ in range(4)))
    finally:
        stop.set()
        thread.join()
    assert outcomes["inside"] > 0 and outcomes[p.ErrorCode.SYMLINK] > 0, outcomes
    assert set(outcomes) <= {"inside", p.ErrorCode.SYMLINK, p.ErrorCode.NOT_A_DIRECTORY}, outcomes
    assert backend.hot_reads.hits > hits and swaps > 100, (backend.hot_reads.hits - hits, swaps)


@pytest.mark.parametrize("content", ["plain ascii\n" * 300, "漢字かな\n" * 300, "🙂\x01\x7f\t" * 300, ""])
def test_an_entry_is_charged_at_least_what_it_and_its_answers_hold(content) -> None:
    answer_text = content + "\n[truncated: showing lines 0-10 of 20; use offset/limit]"
    encoded = json.dumps(
        {"content": [{"type": "text", "text": content}], "structuredContent": {"content": content}}
    )
    held = sys.getsizeof(content) + sys.getsizeof(answer_text) + len(encoded)
    assert hot_reads.charge(content) >= held


async def test_the_bound_holds_across_many_hot_files(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(read_cache, "SETTLE_NS", 0)
    bound = 64 * 1024
    backend = LocalRunnerBackend(
        tmp_path / "ws", tmp_path / "run", RunnerSettings(hot_read_cache_bytes=bound)
    )
    try:
        client = await backend.client_for("t", "w")
        root = backend.workspace_dir("t", "w")
        for n in range(40):
            (root / f"f{n}.txt").write_text(f"{n:04d}" * 1024)  # 4 KiB each: ≈ 17 KiB charged
        for n in range(40):
            for _ in range(2):
                assert await read(client, f"f{n}.txt") == f"{n:04d}" * 1024
            assert backend.hot_reads._bytes <= bound
        assert backend.hot_reads.hits >= 30  # the bound evicts, it does not turn hot reads off
    finally:
        await backend.aclose()
