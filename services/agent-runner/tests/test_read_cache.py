"""The hot-file read cache never serves stale content (issue 9's staleness test).

Keyed by (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) of the fstat of the fd the read opened,
plus the request. Each scenario reads a file (a cache entry), changes it, and reads it again:

* write_file (atomic rename: a new inode), then read;
* a command changes the file in place (same size), then read;
* same size, and the mtime forced back to the old one with os.utime (a "same-second rewrite" that
  an mtime-only cache cannot see): ctime still differs, so the key does.

`test_the_staleness_test_catches_a_key_without_ctime` runs the last scenario with ctime left out of
the key and shows it then DOES return the stale content: the staleness tests fail if anyone drops
ctime_ns from the key (it is how this suite was checked).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import anyio
import pytest
from agent_runner.client import RunnerClient
from agent_runner.protocol import ReadFileRequest, RunCommandRequest, WriteFileRequest
from agent_runner.workspace import files, read_cache
from agent_runner.workspace.paths import Workspace

OLD, NEW = "A" * 64 + "\n", "B" * 64 + "\n"


@pytest.fixture
def cache(monkeypatch):  # noqa: ANN201
    """A fresh cache; files count as settled 30 ms after their last change (a kernel tick is ≤ 10 ms)."""
    fresh = read_cache.ReadCache(1024 * 1024)
    monkeypatch.setattr(read_cache, "CACHE", fresh)
    monkeypatch.setattr(read_cache, "SETTLE_NS", 30_000_000)
    return fresh


def settle() -> None:
    time.sleep(0.04)


def read(ws: Workspace, path: str = "f.txt") -> str:
    return files.read_file(ws, ReadFileRequest(path=path)).content


def cached_read(ws: Workspace, cache: read_cache.ReadCache, path: str = "f.txt") -> str:
    """Read twice: the second read must be a cache hit (so the cache is really in play)."""
    first = read(ws, path)
    hits = cache.hits
    assert read(ws, path) == first
    assert cache.hits == hits + 1, "the file was not served from the cache"
    return first


def rewrite_same_size_same_mtime(path: Path) -> os.stat_result:
    before = path.stat()
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(NEW.encode())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime forced back
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert after.st_ctime_ns != before.st_ctime_ns  # what the cache key relies on
    return after


def test_write_file_then_read(ws: Workspace, root: Path, cache) -> None:  # noqa: ANN001
    (root / "f.txt").write_text(OLD)
    settle()
    assert cached_read(ws, cache) == OLD
    files.write_file(ws, WriteFileRequest(path="f.txt", content=NEW))
    assert read(ws) == NEW  # just written: not even cacheable yet
    settle()
    assert cached_read(ws, cache) == NEW


def test_in_place_change_by_another_process_then_read(ws: Workspace, root: Path, cache) -> None:  # noqa: ANN001
    (root / "f.txt").write_text(OLD)
    settle()
    assert cached_read(ws, cache) == OLD
    subprocess.run(["sh", "-c", f"printf '%s\\n' {NEW.strip()} > f.txt"], cwd=root, check=True)
    assert read(ws) == NEW


def test_same_size_rewrite_with_the_old_mtime_then_read(ws: Workspace, root: Path, cache) -> None:  # noqa: ANN001
    (root / "f.txt").write_text(OLD)
    settle()
    assert cached_read(ws, cache) == OLD
    rewrite_same_size_same_mtime(root / "f.txt")
    assert read(ws) == NEW  # ctime just changed: the cache is bypassed
    settle()
    assert cached_read(ws, cache) == NEW  # settled: only ctime_ns tells this key from the old one


def test_the_staleness_test_catches_a_key_without_ctime(
    ws: Workspace, root: Path, cache, monkeypatch
) -> None:  # noqa: ANN001
    monkeypatch.setattr(
        read_cache, "stat_key", lambda st: (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, 0)
    )
    (root / "f.txt").write_text(OLD)
    settle()
    assert cached_read(ws, cache) == OLD
    rewrite_same_size_same_mtime(root / "f.txt")
    assert read(ws) == NEW  # just changed: bypassed either way
    settle()
    assert read(ws) == OLD  # stale: exactly what the real key (with ctime_ns) prevents


def test_a_just_changed_file_is_not_cached(ws: Workspace, root: Path, monkeypatch) -> None:
    fresh = read_cache.ReadCache(1024 * 1024)
    monkeypatch.setattr(read_cache, "CACHE", fresh)  # default settle time: 1 s
    (root / "f.txt").write_text(OLD)
    read(ws)
    read(ws)
    assert fresh.hits == 0


def test_windows_and_paths_are_separate_entries_and_the_cache_is_bounded(
    ws: Workspace, root: Path, cache
) -> None:  # noqa: ANN001
    (root / "f.txt").write_text("one\ntwo\nthree\n")
    settle()
    assert files.read_file(ws, ReadFileRequest(path="f.txt", offset=1, limit=1)).content == "two\n"
    assert files.read_file(ws, ReadFileRequest(path="f.txt")).content == "one\ntwo\nthree\n"
    small = read_cache.ReadCache(600)
    small.put(("a",), "x", 400)
    small.put(("b",), "y", 400)
    assert small.get(("a",)) is None and small.get(("b",)) == "y"
    off = read_cache.ReadCache(0)
    assert not off.cacheable(os.stat(root / "f.txt"))


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_end_to_end_through_a_runner_process(start_runner, root: Path) -> None:  # noqa: ANN001
    """The real runner (default cache settings): write_file, a command and a forced-mtime rewrite, each
    followed by a read that must see the new content."""
    (root / "f.txt").write_text(OLD)
    runner = start_runner(root)
    await anyio.sleep(read_cache.SETTLE_NS / 1e9 + 0.05)
    async with RunnerClient(token=runner.token, uds=runner.uds) as client:
        for _ in range(2):
            assert (await client.call("files/read", {"path": "f.txt"})).content == OLD
        await client.call("files/write", WriteFileRequest(path="f.txt", content=NEW))
        assert (await client.call("files/read", {"path": "f.txt"})).content == NEW

        await anyio.sleep(read_cache.SETTLE_NS / 1e9 + 0.05)
        assert (await client.call("files/read", {"path": "f.txt"})).content == NEW  # cached now
        status = await client.call("sandbox/status", {})
        if getattr(status, "usable", True):
            result = await client.call(
                "exec/run", RunCommandRequest(shell=f"printf '%s\\n' {OLD.strip()} > f.txt")
            )
            if getattr(result, "exit_code", None) == 0:
                assert (await client.call("files/read", {"path": "f.txt"})).content == OLD
        (root / "f.txt").write_text(OLD)

        await anyio.sleep(read_cache.SETTLE_NS / 1e9 + 0.05)
        for _ in range(2):
            assert (await client.call("files/read", {"path": "f.txt"})).content == OLD
        rewrite_same_size_same_mtime(root / "f.txt")
        assert (await client.call("files/read", {"path": "f.txt"})).content == NEW
        await anyio.sleep(read_cache.SETTLE_NS / 1e9 + 0.05)
        assert (await client.call("files/read", {"path": "f.txt"})).content == NEW


def test_the_event_loop_probe_answers_only_unchanged_cached_files(ws: Workspace, root: Path, cache) -> None:  # noqa: ANN001
    (root / "f.txt").write_text(OLD)
    settle()
    request = ReadFileRequest(path="f.txt")
    assert files.read_file_cached(ws, request) is None  # nothing cached yet
    files.read_file(ws, request)
    assert files.read_file_cached(ws, request).content == OLD
    rewrite_same_size_same_mtime(root / "f.txt")
    assert files.read_file_cached(ws, request) is None  # changed: the thread path reads it
    settle()
    assert files.read_file_cached(ws, request) is None
    assert files.read_file(ws, request).content == NEW
    assert (
        files.read_file_cached(ws, ReadFileRequest(path="../etc/passwd")) is None
    )  # errors: read_file reports
    assert files.read_file_cached(ws, ReadFileRequest(path="missing")) is None
