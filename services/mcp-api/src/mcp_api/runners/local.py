"""Local runner backend: one agent-runner child process per workspace, reached over a Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent_runner.client import RunnerClient, RunnerUnavailable
from agent_runner.workspace.read_cache import ReadCache

from ..observability.tracing import runner_env as runner_observability_env
from ..settings import RunnerSettings, SandboxSettings
from .base import BackendStatus, RunnerLimitError, RunnerStartError, validate_workspace
from .hot_reads import HotReadClient

log = logging.getLogger(__name__)
# A tenant at its runner cap may replace a runner idle at least this long (its jobs die with it).
TENANT_SLOT_IDLE_S = 60.0
# sockaddr_un.sun_path holds 108 bytes including the NUL.
# "/", 16 hex digits, ".", a pid (at most 7 digits: pid_max is 4,194,304), ".sock".
_SOCKET_NAME_CHARS = 1 + 16 + 1 + 7 + 5
_MAX_UDS_PATH = 107


@dataclass
class _Runner:
    process: asyncio.subprocess.Process
    client: RunnerClient
    socket_path: Path
    last_used: float
    sandbox: SandboxSettings  # the command limits it was started with (its --sandbox policy)


class LocalRunnerBackend:
    name = "local"

    def __init__(
        self,
        workspaces_dir: Path,
        run_dir: Path,
        settings: RunnerSettings,
        sandbox: SandboxSettings | None = None,
        max_per_tenant: int | None = None,
        sandbox_for: Callable[[str], SandboxSettings] | None = None,
        max_per_tenant_for: Callable[[str], int | None] | None = None,
    ) -> None:
        self.workspaces_dir = workspaces_dir
        self.settings = settings
        self.sandbox = sandbox or SandboxSettings()
        # The tenant's command limits (its AgentProfile's spec.sandbox.limits over `sandbox`).
        self.sandbox_for = sandbox_for or (lambda _tenant: self.sandbox)
        self.max_per_tenant = max_per_tenant
        # The tenant's runner cap (its AgentProfile's spec.quotas.maxRunners over max_per_tenant).
        self.max_per_tenant_for = max_per_tenant_for or (lambda _tenant: self.max_per_tenant)
        self._run_dir_wanted = run_dir
        self._run_dir: Path | None = None
        self._runners: dict[tuple[str, str], _Runner] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._reaper: asyncio.Task | None = None
        # One bound for all workspaces; each runner's entries carry its id (see hot_reads).
        self.hot_reads = ReadCache(settings.hot_read_cache_bytes)

    @property
    def run_dir(self) -> Path:
        """Socket directory, made on first use so that merely building the backend touches no disk."""
        if self._run_dir is None:
            self._run_dir = self._socket_dir(self._run_dir_wanted)
        return self._run_dir

    @staticmethod
    def _socket_dir(run_dir: Path) -> Path:
        if len(str(run_dir)) + _SOCKET_NAME_CHARS > _MAX_UDS_PATH:
            # A deep data dir would overflow sun_path; a private temp dir keeps the same protection.
            return Path(tempfile.mkdtemp(prefix="secure-agent-run-"))
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        run_dir.chmod(0o700)
        return run_dir

    def workspace_dir(self, tenant: str, workspace: str) -> Path:
        return self.workspaces_dir / tenant / validate_workspace(workspace)

    async def client_for(self, tenant: str, workspace: str) -> RunnerClient:
        key = (tenant, validate_workspace(workspace))
        sandbox = self.sandbox_for(tenant)
        runner = self._runners.get(key)
        if runner and runner.process.returncode is None and _same(runner.sandbox, sandbox):
            runner.last_used = time.monotonic()
            return runner.client
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            runner = self._runners.get(key)
            if runner and runner.process.returncode is None and _same(runner.sandbox, sandbox):
                runner.last_used = time.monotonic()
                return runner.client
            if runner:
                # It died, or the tenant's limits changed: the runner applies its sandbox policy from
                # its start (the runner protocol carries no per-command policy beyond timeout_s), so a
                # new policy needs a new runner. The workspace files stay; its jobs end with it.
                if runner.process.returncode is None:
                    log.info("restarting runner for %s/%s: its profile's sandbox limits changed", *key)
                await self._stop(key)
            await self._make_room_for(key[0])
            if len(self._runners) >= self.settings.max_runners:
                await self._evict_idlest()
            runner = await self._start(*key, sandbox)
            self._runners[key] = runner
            self._ensure_reaper()
            return runner.client

    async def _start(self, tenant: str, workspace: str, sandbox: SandboxSettings) -> _Runner:
        workdir = self.workspace_dir(tenant, workspace)
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        workspace_id = f"{tenant}/{workspace}"
        digest = hashlib.sha256(workspace_id.encode()).hexdigest()[:16]
        # One name per owning process: gunicorn workers each own their runners, and a worker that took
        # another's socket name would unlink it and leave that worker talking to a runner that does
        # not know its token (401s, "runner unavailable"). Only this process's own stale socket (a
        # runner it restarted) is replaced; those of processes that are gone are swept.
        socket_path = self.run_dir / f"{digest}.{os.getpid()}.sock"
        _sweep_dead_sockets(self.run_dir)
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        token = secrets.token_urlsafe(32)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent_runner", "serve",
            "--workspace", str(workdir), "--workspace-id", workspace_id,
            "--uds", str(socket_path), "--token-stdin", "--exit-with-parent",
            "--sandbox", json.dumps(sandbox.model_dump(mode="json")),
            stdin=asyncio.subprocess.PIPE,
            env=_runner_env(),
        )  # fmt: skip
        assert process.stdin is not None
        # The token goes over a pipe, not argv or env, so other local users cannot read it in /proc.
        process.stdin.write(token.encode() + b"\n")
        await process.stdin.drain()
        process.stdin.close()
        client_args = {"token": token, "uds": str(socket_path), "timeout": self.settings.request_timeout_s}
        client = (
            HotReadClient(workspace=workdir, cache=self.hot_reads, **client_args)
            if self.hot_reads.enabled
            else RunnerClient(**client_args)
        )
        try:
            await _ready_or_exited(client, process, self.settings.start_timeout_s)
        except Exception as exc:
            await client.aclose()
            await _terminate(process)
            raise RunnerStartError(
                f"workspace runner for {workspace_id} did not start (exit code {process.returncode}): {exc}"
            ) from exc
        log.info("started runner pid=%s for workspace %s", process.pid, workspace_id)
        return _Runner(
            process=process, client=client, socket_path=socket_path, last_used=time.monotonic(), sandbox=sandbox
        )

    async def list_workspaces(self, tenant: str) -> list[str]:
        root = self.workspaces_dir / tenant
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.is_symlink())

    async def status(self) -> BackendStatus:
        alive = {
            f"{t}/{w}": r.process.pid for (t, w), r in self._runners.items() if r.process.returncode is None
        }
        writable = os.access(self.run_dir, os.W_OK) and (
            os.access(self.workspaces_dir, os.W_OK) or os.access(self.workspaces_dir.parent, os.W_OK)
        )
        return BackendStatus(
            backend=self.name,
            healthy=writable,
            runners=len(alive),
            detail={
                "socket_dir": str(self.run_dir),
                "workspaces_dir": str(self.workspaces_dir),
                "alive": alive,
            },
        )

    async def _make_room_for(self, tenant: str) -> None:
        """Enforce the per-tenant runner cap: reuse the slot of the tenant's longest-idle runner if it
        has been idle a while, otherwise refuse (one tenant must not take every runner)."""
        cap = self.max_per_tenant_for(tenant)
        if cap is None:
            return
        mine = [k for k in self._runners if k[0] == tenant]
        if len(mine) < cap:
            return
        idlest = min(mine, key=lambda k: self._runners[k].last_used)
        if time.monotonic() - self._runners[idlest].last_used >= TENANT_SLOT_IDLE_S:
            await self._stop(idlest)
            return
        raise RunnerLimitError(
            f"tenant {tenant!r} already has {len(mine)} active workspaces (the limit); use one of them "
            f"({', '.join(sorted(k[1] for k in mine))}) or retry in a minute"
        )

    async def _evict_idlest(self) -> None:
        key = min(self._runners, key=lambda k: self._runners[k].last_used)
        await self._stop(key)

    async def _stop(self, key: tuple[str, str]) -> None:
        runner = self._runners.pop(key, None)
        if runner is None:
            return
        await runner.client.aclose()
        await _terminate(runner.process)
        with contextlib.suppress(FileNotFoundError):
            runner.socket_path.unlink()

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_idle())

    async def _reap_idle(self) -> None:
        interval = min(30.0, self.settings.idle_timeout_s / 2)
        while self._runners:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - self.settings.idle_timeout_s
            for key in [
                k
                for k, r in self._runners.items()
                if r.last_used < cutoff or r.process.returncode is not None
            ]:
                log.info("stopping idle runner for %s/%s", *key)
                await self._stop(key)

    async def aclose(self) -> None:
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for key in list(self._runners):
            await self._stop(key)


def _same(a: SandboxSettings, b: SandboxSettings) -> bool:
    # The tenant's profile hands out the same object until it changes: skip the field-by-field ==.
    return a is b or a == b


async def _ready_or_exited(client: RunnerClient, process: asyncio.subprocess.Process, limit_s: float) -> None:
    """Wait for the runner to answer, but give up at once if it exits (bad workspace, socket in use)."""
    ready = asyncio.ensure_future(client.wait_ready(timeout=limit_s))
    exited = asyncio.ensure_future(process.wait())
    try:
        done, _ = await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        if ready in done:
            ready.result()
            return
        raise RuntimeError(f"runner exited with code {process.returncode} before answering")
    finally:
        for task in (ready, exited):
            task.cancel()
        await asyncio.gather(ready, exited, return_exceptions=True)


def _runner_env() -> dict[str, str]:
    # The runner gets nothing of ours beyond what Python needs: provider keys never reach it.
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")
    # Test runs measure runners too; these variables only exist under coverage.
    keep += ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")
    # Kill switches of the runner's read cache (bytes, 0: off), heap freeze, write coalescing and direct
    # log lines (0: off), for bench/ab.py.
    keep += ("AGENT_RUNNER_READ_CACHE_BYTES", "AGENT_RUNNER_GC_FREEZE", "AGENT_RUNNER_COALESCE_WRITES")
    keep += ("SECURE_AGENT_LOG_DIRECT",)
    # Log format and level, and where spans go, so the runner's lines and spans join mcp-api's.
    return {**{k: v for k, v in os.environ.items() if k in keep}, **runner_observability_env()}


async def _terminate(process: asyncio.subprocess.Process, grace: float = 3.0) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


__all__ = ["LocalRunnerBackend", "RunnerUnavailable"]


def _sweep_dead_sockets(run_dir: Path) -> None:
    """Remove the sockets of runners whose owning mcp-api process is gone (a crash leaves them)."""
    for path in run_dir.glob("*.*.sock"):
        pid = path.name.split(".")[1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        except PermissionError:
            pass  # alive, another user's
