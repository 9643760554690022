"""The `kubernetes` RunnerBackend: a workspace gets an agent-runner pod, reached on its pod IP with
a per-pod token. Order of preference: the workspace's existing pod (possibly claimed by another
replica: its token is read from its Secret), a warm pod from the pool, a cold start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent_runner.client import RunnerClient

from ...observability import metrics
from ..base import BackendStatus, RunnerLimitError, RunnerStartError, validate_workspace
from .launcher import (
    KubeApi,
    KubeApiError,
    LaunchedPod,
    NotFound,
    PodLauncher,
    api_client,
    pod_failed,
    pod_ready,
)
from .pods import (
    HEARTBEAT_ANNOTATION,
    STATE_LABEL,
    TENANT_LABEL,
    WORKSPACE_ANNOTATION,
    PodOptions,
    pool_labels,
    short_hash,
    workspace_labels,
)
from .pool import BACKEND, WarmPool
from .reconcile import Reconciler

log = logging.getLogger(__name__)
RECHECK_S = 30.0  # how stale our belief that a held pod exists may be


@dataclass
class _Held:
    pod: str
    client: RunnerClient
    last_used: float
    checked: float


class KubernetesRunnerBackend:
    name = "kubernetes"

    def __init__(
        self,
        api: KubeApi,
        options: PodOptions,
        *,
        pool_size: int = 2,
        idle_timeout_s: float = 900.0,
        start_timeout_s: float = 15.0,
        request_timeout_s: float = 60.0,
        ready_timeout_s: float = 120.0,
        refill_interval_s: float = 5.0,
        reconcile_interval_s: float = 60.0,
        max_runners: int = 64,
        max_per_tenant: int | None = None,
        launcher_id: str | None = None,
        poll_s: float = 0.5,
    ) -> None:
        self.api = api
        self.options = options
        self.launcher = PodLauncher(api, options, ready_timeout_s=ready_timeout_s, poll_s=poll_s)
        self.pool = WarmPool(
            api, self.launcher, options, size=pool_size, launcher_id=launcher_id or secrets.token_hex(4),
            refill_interval_s=refill_interval_s,
        )  # fmt: skip
        self.idle_timeout_s = idle_timeout_s
        self.start_timeout_s = start_timeout_s
        self.request_timeout_s = request_timeout_s
        self.reconcile_interval_s = reconcile_interval_s
        self.max_runners = max_runners
        self.max_per_tenant = max_per_tenant
        self.reconciler = Reconciler(
            api, held=self.held_pods, claim_grace_s=max(3 * reconcile_interval_s, 120.0),
            ready_timeout_s=ready_timeout_s,
        )  # fmt: skip
        self._held: dict[tuple[str, str], _Held] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._tasks: list[asyncio.Task] = []
        metrics.RUNNER_POOL_CAPACITY.labels(BACKEND).set(max_runners)

    @classmethod
    def from_settings(cls, settings: Any) -> KubernetesRunnerBackend:
        k8s = settings.kubernetes
        api = KubeApi(
            api_client(k8s.api_url, in_cluster=k8s.in_cluster, timeout_s=k8s.api_timeout_s),
            k8s.namespace, retries=k8s.api_retries, timeout_s=k8s.api_timeout_s,
        )  # fmt: skip
        runner = settings.runner
        return cls(
            api,
            PodOptions.from_settings(k8s, settings.sandbox),
            pool_size=k8s.warm_pool_size,
            idle_timeout_s=runner.idle_timeout_s,
            start_timeout_s=runner.start_timeout_s,
            request_timeout_s=runner.request_timeout_s,
            ready_timeout_s=k8s.ready_timeout_s,
            refill_interval_s=k8s.refill_interval_s,
            reconcile_interval_s=k8s.reconcile_interval_s,
            max_runners=runner.max_runners,
            max_per_tenant=settings.rate_limits.max_runners_per_tenant or None,
        )

    def held_pods(self) -> set[str]:
        return {h.pod for h in self._held.values()}

    # --- RunnerBackend ---------------------------------------------------------------------------
    async def client_for(self, tenant: str, workspace: str) -> RunnerClient:
        key = (tenant, validate_workspace(workspace))
        self.start_background()
        held = self._held.get(key)
        if held and await self._still_there(key, held):
            held.last_used = time.monotonic()
            return held.client
        async with self._locks.setdefault(key, asyncio.Lock()):
            held = self._held.get(key)
            if held and await self._still_there(key, held):
                held.last_used = time.monotonic()
                return held.client
            self._check_limits(tenant)
            started = time.perf_counter()
            launched = await self._existing(tenant, workspace) or await self.pool.claim(tenant, workspace)
            if launched is None:
                launched = await self._cold_start(tenant, workspace)
            client = RunnerClient(
                token=launched.token, base_url=launched.base_url, timeout=self.request_timeout_s
            )
            try:
                await client.wait_ready(timeout=self.start_timeout_s)
            except Exception as exc:
                await client.aclose()
                metrics.RUNNER_START_FAILURES.labels(BACKEND).inc()
                with contextlib.suppress(KubeApiError):
                    await self.api.delete_pod(launched.name)
                raise RunnerStartError(
                    f"runner pod {launched.name} for workspace {tenant}/{workspace} is running but its runner "
                    f"did not answer at {launched.base_url}: {exc}; the pod was removed, retry the call"
                ) from exc
            metrics.RUNNER_CLAIM_SECONDS.labels(BACKEND).observe(time.perf_counter() - started)
            now = time.monotonic()
            self._held[key] = _Held(pod=launched.name, client=client, last_used=now, checked=now)
            self._set_gauges()
            return client

    async def list_workspaces(self, tenant: str) -> list[str]:
        pods = await self.api.list_pods({**pool_labels(self.options), TENANT_LABEL: short_hash(tenant)})
        names = set()
        for pod in pods:
            ws = ((pod["metadata"].get("annotations") or {}).get(WORKSPACE_ANNOTATION) or "").split("/", 1)
            if len(ws) == 2 and ws[0] == tenant:
                names.add(ws[1])
        return sorted(names | {w for t, w in self._held if t == tenant})

    async def status(self) -> BackendStatus:
        self.start_background()
        detail: dict[str, Any] = {
            "namespace": self.api.namespace,
            "held": {f"{t}/{w}": h.pod for (t, w), h in self._held.items()},
            "pool_size": self.pool.size,
            # Kubernetes emptyDir cannot be mounted noexec before bindMountOptions (1.37 alpha):
            # the runner's Landlock EXECUTE right is what keeps workspace files from being run.
            "workspace_noexec": "landlock",
        }
        try:
            warm = await self.pool.warm_pods()
        except KubeApiError as exc:
            detail["error"] = str(exc)
            return BackendStatus(backend=self.name, healthy=False, runners=len(self._held), detail=detail)
        detail["warm"] = sum(1 for p in warm if pod_ready(p))
        return BackendStatus(backend=self.name, healthy=True, runners=len(self._held), detail=detail)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for key in list(self._held):
            await self._release(key)
        with contextlib.suppress(KubeApiError):
            await self.pool.drain()

    # --- internals -------------------------------------------------------------------------------
    def start_background(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        if self.pool.size > 0:
            self._tasks.append(loop.create_task(self.pool.run()))
        self._tasks.append(loop.create_task(self._housekeeping()))

    async def _housekeeping(self) -> None:
        interval = min(self.reconcile_interval_s, self.idle_timeout_s / 2)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.housekeep_once()
            except KubeApiError as exc:
                log.warning("runner housekeeping failed: %s", exc)

    async def housekeep_once(self) -> None:
        """Stop idle runners, renew heartbeats of held pods, remove orphans."""
        cutoff = time.monotonic() - self.idle_timeout_s
        for key, held in list(self._held.items()):
            if held.last_used < cutoff:
                log.info("stopping idle runner pod %s for %s/%s", held.pod, *key)
                await self._release(key)
        stamp = datetime.now(UTC).isoformat()
        for key, held in list(self._held.items()):
            try:
                await self.api.patch_pod(
                    held.pod, {"metadata": {"annotations": {HEARTBEAT_ANNOTATION: stamp}}}
                )
            except NotFound:
                await self._forget(key)
        await self.reconciler.run_once()
        self._set_gauges()

    async def _still_there(self, key: tuple[str, str], held: _Held) -> bool:
        if time.monotonic() - held.checked < RECHECK_S:
            return True
        try:
            pod = await self.api.get_pod(held.pod)
        except NotFound:
            pod = None
        if pod is None or pod_failed(pod):
            log.warning("runner pod %s of %s/%s is gone; starting a new one", held.pod, *key)
            await self._forget(key)
            return False
        held.checked = time.monotonic()
        return True

    async def _existing(self, tenant: str, workspace: str) -> LaunchedPod | None:
        """The workspace's pod claimed earlier (by this or another replica), if it is ready."""
        labels = {**pool_labels(self.options), STATE_LABEL: "claimed", **workspace_labels(tenant, workspace)}
        for pod in await self.api.list_pods(labels):
            if pod_ready(pod) and not pod_failed(pod):
                name = pod["metadata"]["name"]
                try:
                    token = await self.api.read_token(name)
                except NotFound:
                    continue
                return LaunchedPod(
                    name=name, ip=pod["status"]["podIP"], port=self.options.port, token=token, pod=pod
                )
        return None

    async def _cold_start(self, tenant: str, workspace: str) -> LaunchedPod:
        started = time.perf_counter()
        try:
            launched = await self.launcher.launch(tenant=tenant, workspace=workspace)
        except RunnerStartError:
            metrics.RUNNER_START_FAILURES.labels(BACKEND).inc()
            raise
        metrics.RUNNER_COLD_START_SECONDS.labels(BACKEND).observe(time.perf_counter() - started)
        return launched

    def _check_limits(self, tenant: str) -> None:
        if self.max_per_tenant is not None:
            mine = [w for t, w in self._held if t == tenant]
            if len(mine) >= self.max_per_tenant:
                raise RunnerLimitError(
                    f"tenant {tenant!r} already has {len(mine)} active workspaces (the limit); use one of "
                    f"them ({', '.join(sorted(mine))}) or retry later"
                )
        if len(self._held) >= self.max_runners:
            raise RunnerLimitError(f"all {self.max_runners} runner pods are in use; retry in a minute")

    async def _forget(self, key: tuple[str, str]) -> None:
        held = self._held.pop(key, None)
        if held:
            await held.client.aclose()
        self._set_gauges()

    async def _release(self, key: tuple[str, str]) -> None:
        held = self._held.get(key)
        await self._forget(key)
        if held:
            with contextlib.suppress(KubeApiError):
                await self.api.delete_pod(held.pod)

    def _set_gauges(self) -> None:
        metrics.RUNNER_POOL.labels(BACKEND, "claimed").set(len(self._held))
