"""Fixtures for the sandbox proof tests.

Every control is proven in the two modes the runner can be in:

- "full": the runner is root (as on these machines and in a root container): namespaces,
  idmapped noexec workspace, uid drop, cgroups, plus Landlock and seccomp. The workspace lives
  under pytest's 0700 tmp dir, so the masking of ancestors the sandbox uid cannot traverse is
  exercised too.
- "minimal": what an unprivileged runner gets (the Kubernetes pod, a laptop user): Landlock,
  seccomp, rlimits, no_new_privs and an unprivileged uid, but no namespaces and no cgroups. As
  root we emulate it with use_namespaces/use_cgroups off and a workspace owned by the sandbox
  uid (which is how the plan decides to drop to it without an idmapped mount).
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_runner.sandbox.policy import NOBODY, SandboxPolicy
from agent_runner.sandbox.probe import landlock_abi
from agent_runner.sandbox.spawn import active_controls, shutdown_forkserver

IS_ROOT = os.geteuid() == 0
LANDLOCK_ABI = landlock_abi()[0]
MACHINE = platform.machine()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _stop_forkserver() -> Iterator[None]:
    yield
    shutdown_forkserver()


@pytest.fixture(scope="session")
def minimal_base() -> Iterator[Path]:
    """A world-traversable directory for minimal-mode workspaces (no mount namespace can hide
    untraversable ancestors there, so they must really be traversable)."""
    base = Path(tempfile.mkdtemp(prefix="sa-sandbox-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _own(path: Path) -> None:
    if IS_ROOT:
        os.chown(path, NOBODY, NOBODY)


@pytest.fixture(params=["full", "minimal"])
def mode(request: pytest.FixtureRequest) -> str:
    if request.param == "full" and not IS_ROOT:
        pytest.skip("full confinement needs a root runner")
    if LANDLOCK_ABI < 1 and request.param == "minimal":
        pytest.skip("minimal mode needs Landlock")
    return request.param


@pytest.fixture
def make_policy(mode: str, tmp_path: Path, minimal_base: Path) -> Callable[..., SandboxPolicy]:
    """Build a policy for the current mode; keyword arguments override fields."""
    if mode == "full":
        root = tmp_path
    else:
        root = Path(tempfile.mkdtemp(dir=minimal_base))
        root.chmod(0o755)
    ws, tmp = root / "ws", root / "tmp"
    ws.mkdir()
    tmp.mkdir(mode=0o700)
    if mode == "minimal":
        _own(ws)
        _own(tmp)

    def make(**overrides: object) -> SandboxPolicy:
        fields: dict[str, object] = {"workspace": ws, "tmp_dir": tmp, "timeout_s": 20.0}
        if mode == "minimal":
            fields.update(use_namespaces=False, use_cgroups=False)
        fields.update(overrides)
        return SandboxPolicy(**fields)

    return make


@pytest.fixture
def policy(make_policy: Callable[..., SandboxPolicy]) -> SandboxPolicy:
    return make_policy()


@pytest.fixture
def controls(policy: SandboxPolicy) -> dict[str, str]:
    return active_controls(policy)


class Helpers:
    """Helpers shared by the sandbox tests (a fixture: with --import-mode=importlib a conftest
    is not importable from test modules)."""

    landlock_abi = LANDLOCK_ABI
    machine = MACHINE

    @staticmethod
    def python(code: str) -> list[str]:
        """argv running `code` with the system Python (the one reachable inside the sandbox)."""
        return ["python3", "-c", code]

    @staticmethod
    def survivors(marker: str) -> list[int]:
        """Host PIDs whose command line contains `marker` (the sandbox's PID namespaces included)."""
        found = []
        me = os.getpid()
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmdline = f.read()
                with open(f"/proc/{name}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except OSError:
                continue
            if marker.encode() in cmdline and state != b"Z":
                found.append(int(name))
        return found

    def wait_no_survivors(self, marker: str, timeout: float = 2.0) -> list[int]:
        """Survivors still there after `timeout` (killed processes take a moment to go)."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.survivors(marker)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.02)

    @staticmethod
    def rss_kib() -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    @staticmethod
    def loader() -> str | None:
        """The dynamic loader of this machine (for the `ld.so ./binary` test)."""
        for path in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"):
            if os.path.exists(path):
                return path
        return None


@pytest.fixture(scope="session")
def helpers() -> Helpers:
    return Helpers()
