"""The symlink-swap race: a directory and a symlink to outside are atomically exchanged while
`d/f` is read over and over. Nothing from outside may ever come back, and both outcomes (the
inside file, and a symlink refusal) must occur, which proves the race was really exercised.

A control test runs the naive realpath-check-then-open reader against the same swapper, to show
the harness does catch a leak when there is one.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from agent_runner.client import RunnerClient, RunnerError
from agent_runner.errors import OperationError
from agent_runner.protocol import ErrorCode, ReadFileRequest, ReadFileResult
from agent_runner.workspace.paths import Workspace

SECRET = "SECRET-OUTSIDE"
IN_PROCESS_OPENS = 20_000
RUNNER_READS = 3_000


@pytest.fixture
def race_tree(root: Path, outside: Path) -> tuple[Path, Path]:
    """ws/d is a real directory holding f="inside"; ws/s is a symlink to a directory outside
    that holds f="SECRET-OUTSIDE". Exchanging d and s flips what `d/f` names."""
    (root / "d").mkdir()
    (root / "d" / "f").write_text("inside")
    (root / "s").symlink_to(outside)
    assert (outside / "f").read_text() == SECRET
    return root / "d", root / "s"


@contextmanager
def swapping(exchange: Callable[[Path, Path], None], a: Path, b: Path) -> Iterator[collections.Counter]:
    """Exchange a and b in a tight loop on a background thread for the duration of the block."""
    stop = threading.Event()
    stats: collections.Counter = collections.Counter()

    def loop() -> None:
        while not stop.is_set():
            exchange(a, b)
            stats["swaps"] += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield stats
    finally:
        stop.set()
        thread.join()


@pytest.mark.timeout(120)
def test_in_process_open_never_escapes(ws: Workspace, race_tree, exchange) -> None:  # noqa: ANN001
    d, s = race_tree
    outcomes: collections.Counter = collections.Counter()
    leaks = 0
    with swapping(exchange, d, s) as stats:
        for _ in range(IN_PROCESS_OPENS):
            try:
                fd, _ = ws.open_regular("d/f")
            except OperationError as exc:
                outcomes[exc.code] += 1
                continue
            try:
                data = os.read(fd, 100)
            finally:
                os.close(fd)
            if SECRET.encode() in data:
                leaks += 1
            else:
                assert data == b"inside"
                outcomes["inside"] += 1
    print(f"in-process: {dict(outcomes)}, swaps={stats['swaps']}")
    assert leaks == 0
    assert outcomes["inside"] > 0, outcomes
    assert outcomes[ErrorCode.SYMLINK] > 0, outcomes
    # The walk may see the entry as "not a directory" when it changes under it; never anything else.
    assert set(outcomes) <= {"inside", ErrorCode.SYMLINK, ErrorCode.NOT_A_DIRECTORY}, outcomes
    assert stats["swaps"] > 100


@pytest.mark.anyio
@pytest.mark.timeout(120)
@pytest.mark.integration
async def test_runner_process_reads_never_escape(
    start_runner,
    root: Path,
    race_tree,
    exchange,
    resolver: str,  # noqa: ANN001
) -> None:
    runner = start_runner(root, "--resolver", resolver)
    d, s = race_tree
    outcomes: collections.Counter = collections.Counter()
    leaked: list[str] = []

    async with RunnerClient(token=runner.token, uds=runner.uds, timeout=30) as client:
        health = await client.wait_ready(timeout=15)
        assert health.resolver == resolver

        async def reader(count: int) -> None:
            for _ in range(count):
                try:
                    result = await client.call("files/read", ReadFileRequest(path="d/f"))
                except RunnerError as exc:
                    if SECRET in exc.message:
                        leaked.append(exc.message)
                    outcomes[exc.code] += 1
                    continue
                assert isinstance(result, ReadFileResult)
                if SECRET in result.content:
                    leaked.append(result.content)
                else:
                    assert result.content == "inside"
                    outcomes["inside"] += 1

        started = time.monotonic()
        with swapping(exchange, d, s):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(reader, RUNNER_READS // 4)
        elapsed = time.monotonic() - started

    print(f"runner: {dict(outcomes)} in {elapsed:.1f} s")
    assert leaked == []
    assert sum(outcomes.values()) == RUNNER_READS
    assert outcomes["inside"] > 0, outcomes
    assert outcomes[ErrorCode.SYMLINK] > 0, outcomes
    assert set(outcomes) <= {"inside", ErrorCode.SYMLINK, ErrorCode.NOT_A_DIRECTORY}, outcomes
    assert elapsed < 60


@pytest.mark.timeout(60)
def test_control_naive_realpath_check_leaks(root: Path, race_tree, exchange) -> None:  # noqa: ANN001
    """The same swapper defeats check-then-open; if it never does here, the window was not hit."""
    d, s = race_tree
    real_root = os.path.realpath(root)
    leaks = attempts = 0
    deadline = time.monotonic() + 10
    with swapping(exchange, d, s):
        while time.monotonic() < deadline and leaks == 0:
            attempts += 1
            try:
                resolved = os.path.realpath(root / "d" / "f")
            except OSError:
                continue  # the entry changed type mid-resolution
            if not resolved.startswith(real_root + os.sep):
                continue  # the check caught it this time
            try:
                with open(root / "d" / "f") as f:  # reopen by name: the bug
                    if SECRET in f.read():
                        leaks += 1
            except OSError:
                pass
    print(f"naive: first leak after {attempts} attempts" if leaks else "naive: no leak")
    if leaks == 0:
        pytest.skip(f"the race window was not hit in {attempts} naive attempts")
    assert leaks > 0
