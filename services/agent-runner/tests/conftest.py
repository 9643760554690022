"""Shared fixtures for the agent-runner tests.

Tests run with --import-mode=importlib, so helpers live here as fixtures, not in an importable
module.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from agent_runner.workspace import syscalls
from agent_runner.workspace.paths import Workspace, openat2_supported

SECRET = "SECRET-OUTSIDE"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registered_secret(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test module's REGISTERED value as the only registered secret during the test (the registry
    is process-wide: emptied before and after)."""
    from agent_runner.observability import redaction

    redaction.forget_secrets()
    redaction.register_secret(request.module.REGISTERED)
    yield request.module.REGISTERED
    redaction.forget_secrets()


def _resolver_params() -> list:
    return [
        pytest.param(
            "openat2",
            marks=pytest.mark.skipif(not openat2_supported(), reason="kernel has no openat2"),
        ),
        "nofollow-walk",
    ]


@pytest.fixture(params=_resolver_params())
def resolver(request: pytest.FixtureRequest) -> str:
    """Both resolvers, so every attack test runs against openat2 and the fallback walk."""
    return request.param


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The workspace directory."""
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the workspace holding a secret no operation may ever reveal."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text(SECRET)
    (path / "f").write_text(SECRET)
    return path


@pytest.fixture
def ws(root: Path, resolver: str) -> Iterator[Workspace]:
    with Workspace(root, resolver=resolver) as workspace:
        yield workspace


@pytest.fixture
def exchange() -> Callable[[Path, Path], None]:
    """Atomically swap two directory entries (renameat2 RENAME_EXCHANGE)."""

    def swap(a: Path, b: Path) -> None:
        syscalls.renameat2(syscalls.AT_FDCWD, str(a), syscalls.AT_FDCWD, str(b), syscalls.RENAME_EXCHANGE)

    return swap


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory: Unix socket paths must fit in 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ar-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class RunnerProcess:
    proc: subprocess.Popen
    uds: str
    token: str
    workspace: Path

    def wait_socket(self, timeout: float = 15.0) -> None:
        """Wait until the runner accepts connections (or fail with its stderr)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"runner exited with {self.proc.returncode}: {self.proc.stderr.read()}")
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(self.uds)
                return
            except OSError:
                time.sleep(0.02)
            finally:
                probe.close()
        raise AssertionError("runner socket did not come up")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def start_runner(short_tmp: Path) -> Iterator[Callable[..., RunnerProcess]]:
    """Start `python -m agent_runner serve` on a Unix socket, token on stdin; stopped at teardown."""
    started: list[RunnerProcess] = []

    def start(workspace: Path, *extra: str, wait: bool = True) -> RunnerProcess:
        token = secrets.token_urlsafe(32)
        uds = str(short_tmp / f"r{len(started)}.sock")
        env = {k: v for k, v in os.environ.items() if not k.startswith("COV_CORE")}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent_runner",
                "serve",
                "--workspace",
                str(workspace),
                "--workspace-id",
                "ws-test",
                "--uds",
                uds,
                "--token-stdin",
                *extra,
            ],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        proc.stdin.write(token + "\n")
        proc.stdin.close()
        runner = RunnerProcess(proc, uds, token, workspace)
        started.append(runner)
        if wait:
            runner.wait_socket()
        return runner

    yield start
    for runner in started:
        runner.stop()
        if runner.proc.stderr:
            runner.proc.stderr.close()
