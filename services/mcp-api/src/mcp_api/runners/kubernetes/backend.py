"""The `kubernetes` RunnerBackend: a workspace gets an agent-runner pod, reached on its pod IP with
a per-pod token. Order of preference: the workspace's existing pod (possibly claimed by another
replica: its token is read from its Secret), a warm pod from the pool, a cold start.

Pods follow the caller's AgentProfile (profiles.py): each profile in force has its own warm pool
(pods labelled with the profile and a hash of its pod spec, so a claim only takes a pod of the
caller's profile and current spec). When a profile's pod spec changes, the warm pods of the old
spec are removed and a workspace pod of the old spec is replaced at the workspace's next call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent_runner.client import RunnerClient

from ...observability import metrics
from ..base import BackendStatus, RunnerLimitError, RunnerStartError, validate_workspace
from .egress import EgressPolicies
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
    APP,
    APP_LABEL,
    HEARTBEAT_ANNOTATION,
    SPEC_LABEL,
    STATE_LABEL,
    TENANT_LABEL,
    WORKSPACE_ANNOTATION,
    PodOptions,
    short_hash,
    spec_hash,
    workspace_labels,
)
from .podwatch import PodWatcher
from .pool import BACKEND, WarmPool
from .profiles import PodProfile, ProfilePods
from .reconcile import Reconciler

log = logging.getLogger(__name__)
RECHECK_S = 30.0  # how stale our belief that a held pod exists may be


@dataclass
class _Held:
    pod: str
    client: RunnerClient
    last_used: float
    checked: float
    spec: str  # spec_hash of the pod's options


def noexec_control(options: PodOptions) -> str:
    """What keeps workspace files from being executed in runner pods (for /diagnostics)."""
    return "bindMountOptions+landlock" if options.workspace_noexec_mount else "landlock"


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
        profile_for: Callable[[str], PodProfile] | None = None,
        pod_profiles: Callable[[], list[PodProfile]] | None = None,
        watch_pods: bool = True,
        max_per_tenant_for: Callable[[str], int | None] | None = None,
        egress: EgressPolicies | None = None,
    ) -> None:
        self.api = api
        self.options = options
        base = PodProfile(options.profile, options, pool_size)
        # tenant -> the pods of its AgentProfile; and every profile that needs a warm pool.
        self.profile_for = profile_for or (lambda _tenant: base)
        self.pod_profiles = pod_profiles or (lambda: [base])
        self._base = base
        self.launcher_id = launcher_id or secrets.token_hex(4)
        self.ready_timeout_s = ready_timeout_s
        self.poll_s = poll_s
        self.refill_interval_s = refill_interval_s
        self.pools: dict[str, WarmPool] = {}
        self._retired: list[asyncio.Task] = []
        # Readiness and deletion of runner pods as watch events (podwatch.py); started with the
        # background tasks. Without it (watch_pods=False) launches poll and deletions are found
        # by the periodic re-check of held pods.
        self.watcher: PodWatcher | None = (
            PodWatcher(api.core, api.namespace, {APP_LABEL: APP}, read_timeout_s=max(30.0, api.timeout_s * 3))
            if watch_pods
            else None
        )
        if self.watcher is not None:
            self.watcher.on_delete.append(self._pod_deleted)
        self.idle_timeout_s = idle_timeout_s
        self.start_timeout_s = start_timeout_s
        self.request_timeout_s = request_timeout_s
        self.reconcile_interval_s = reconcile_interval_s
        self.max_runners = max_runners
        self.max_per_tenant = max_per_tenant
        self.max_per_tenant_for = max_per_tenant_for or (lambda _tenant: self.max_per_tenant)
        # One egress NetworkPolicy per AgentProfile listing spec.sandbox.egress (egress.py).
        self.egress = egress
        self.reconciler = Reconciler(
            api, held=self.held_pods, claim_grace_s=max(3 * reconcile_interval_s, 120.0),
            ready_timeout_s=ready_timeout_s,
        )  # fmt: skip
        self._held: dict[tuple[str, str], _Held] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._tasks: list[asyncio.Task] = []
        metrics.RUNNER_POOL_CAPACITY.labels(BACKEND).set(max_runners)

    @classmethod
    def from_settings(cls, settings: Any, profiles: Any = None) -> KubernetesRunnerBackend:
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
            **(
                {
                    "profile_for": ProfilePods(profiles).for_tenant,
                    "pod_profiles": ProfilePods(profiles).all,
                    "max_per_tenant_for": lambda tenant: profiles.for_tenant(tenant).max_runners,
                    "egress": EgressPolicies(api, profiles, interval_s=k8s.reconcile_interval_s),
                }
                if profiles is not None
                else {}
            ),
        )

    # --- per-profile pools -----------------------------------------------------------------------
    def pool_for(self, profile: PodProfile) -> WarmPool:
        """The profile's warm pool; a new one when the profile's pod spec changed (the old one is
        drained in the background: its warm pods are of the old spec)."""
        pool = self.pools.get(profile.name)
        if pool is not None and pool.options == profile.options:
            pool.size = profile.pool_size
            return pool
        launcher = PodLauncher(
            self.api, profile.options, ready_timeout_s=self.ready_timeout_s, poll_s=self.poll_s
        )
        launcher.watcher = self.watcher
        fresh = WarmPool(
            self.api, launcher, profile.options, size=profile.pool_size, launcher_id=self.launcher_id,
            refill_interval_s=self.refill_interval_s,
        )  # fmt: skip
        self.pools[profile.name] = fresh
        if pool is not None:
            self._retire(pool)
        return fresh

    @property
    def pool(self) -> WarmPool:
        """The pool of the replica's own profile (the one `options` describes)."""
        return self.pool_for(self._base)

    def _retire(self, pool: WarmPool) -> None:
        log.info("profile %s changed: removing its warm pods of the old spec", pool.options.profile)
        with contextlib.suppress(RuntimeError):  # no running loop: nothing was started either
            self._retired.append(asyncio.get_running_loop().create_task(pool.drain()))

    async def sync_pools(self) -> None:
        """Keep one pool per profile in force, each refilled to its size; drop the pools of removed
        profiles."""
        wanted = {p.name: p for p in self.pod_profiles()}
        for name in list(self.pools):
            if name not in wanted:
                self._retire(self.pools.pop(name))
        for profile in wanted.values():
            pool = self.pool_for(profile)
            if pool.size > 0 or pool._tokens:  # a size-0 pool with none of our pods has nothing to do
                await pool._refill_once()

    async def _pools_loop(self) -> None:
        while True:
            try:
                await self.sync_pools()
            except Exception as exc:  # a bad profile or an API hiccup must not end the loop
                log.warning("warm pool sync failed: %s", exc)
            await asyncio.sleep(self.refill_interval_s)

    def held_pods(self) -> set[str]:
        return {h.pod for h in self._held.values()}

    # --- RunnerBackend ---------------------------------------------------------------------------
    async def client_for(self, tenant: str, workspace: str) -> RunnerClient:
        key = (tenant, validate_workspace(workspace))
        self.start_background()
        profile = self.profile_for(tenant)
        spec = spec_hash(profile.options)
        held = self._held.get(key)
        if held and held.spec == spec and await self._still_there(key, held):
            held.last_used = time.monotonic()
            return held.client
        async with self._locks.setdefault(key, asyncio.Lock()):
            held = self._held.get(key)
            if held and held.spec != spec:
                # The tenant's profile now wants other pods (image, runtimeClass, limits...): a new pod.
                log.info("runner pod %s of %s/%s has an older profile spec; replacing it", held.pod, *key)
                await self._release(key)
                held = None
            if held and await self._still_there(key, held):
                held.last_used = time.monotonic()
                return held.client
            self._check_limits(tenant)
            started = time.perf_counter()
            pool = self.pool_for(profile)
            launched = await self._existing(tenant, workspace, spec) or await pool.claim(tenant, workspace)
            if launched is None:
                launched = await self._cold_start(pool.launcher, tenant, workspace)
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
            self._held[key] = _Held(
                pod=launched.name, client=client, last_used=now, checked=now, spec=spec
            )
            self._set_gauges()
            return client

    async def list_workspaces(self, tenant: str) -> list[str]:
        pods = await self.api.list_pods({APP_LABEL: APP, TENANT_LABEL: short_hash(tenant)})
        names = set()
        for pod in pods:
            ws = ((pod["metadata"].get("annotations") or {}).get(WORKSPACE_ANNOTATION) or "").split("/", 1)
            if len(ws) == 2 and ws[0] == tenant:
                names.add(ws[1])
        return sorted(names | {w for t, w in self._held if t == tenant})

    async def status(self) -> BackendStatus:
        self.start_background()
        pools = [self.pool_for(p) for p in self.pod_profiles()]
        detail: dict[str, Any] = {
            "namespace": self.api.namespace,
            "held": {f"{t}/{w}": h.pod for (t, w), h in self._held.items()},
            "pool_size": sum(p.size for p in pools),
            # Kubernetes emptyDir cannot be mounted noexec without bindMountOptions (1.37 alpha,
            # `kubernetes.workspace_noexec_mount`); without it the runner's Landlock EXECUTE right is
            # what keeps workspace files from being run.
            "workspace_noexec": noexec_control(self.options),
        }
        try:
            warm = {p.options.profile: await p.warm_pods() for p in pools}
        except KubeApiError as exc:
            detail["error"] = str(exc)
            return BackendStatus(backend=self.name, healthy=False, runners=len(self._held), detail=detail)
        ready = {name: sum(1 for pod in pods if pod_ready(pod)) for name, pods in warm.items()}
        detail["warm"] = sum(ready.values())
        detail["pools"] = {p.options.profile: {"size": p.size, "warm": ready[p.options.profile]} for p in pools}
        return BackendStatus(backend=self.name, healthy=True, runners=len(self._held), detail=detail)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.egress is not None:  # stops following profiles; the policies stay for the pods
            await self.egress.stop()
        if self.watcher is not None:
            await self.watcher.stop()
        for key in list(self._held):
            await self._release(key)
        for pool in list(self.pools.values()):
            with contextlib.suppress(KubeApiError):
                await pool.drain()
        await asyncio.gather(*self._retired, return_exceptions=True)
        self._retired.clear()

    # --- internals -------------------------------------------------------------------------------
    def start_background(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        if self.watcher is not None:
            self.watcher.start()
        if self.egress is not None:
            self.egress.start()
        self._tasks.append(loop.create_task(self._pools_loop()))
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

    def _pod_deleted(self, name: str) -> None:
        """A runner pod is gone (watch event): the workspace holding it gets a new pod at its next
        call instead of after RECHECK_S; a warm pool that lost one refills now."""
        for key, held in self._held.items():
            if held.pod == name:
                log.warning("runner pod %s of %s/%s was deleted", name, *key)
                held.checked = float("-inf")  # _still_there asks the API, finds it gone, forgets it
        for pool in self.pools.values():
            if name in pool._tokens:
                pool.kick()

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

    async def _existing(self, tenant: str, workspace: str, spec: str) -> LaunchedPod | None:
        """The workspace's pod claimed earlier (by this or another replica), if it is ready and of the
        profile spec in force. One of an older spec is deleted: a workspace has one pod at a time."""
        labels = {APP_LABEL: APP, STATE_LABEL: "claimed", **workspace_labels(tenant, workspace)}
        for pod in await self.api.list_pods(labels):
            name = pod["metadata"]["name"]
            if (pod["metadata"].get("labels") or {}).get(SPEC_LABEL) != spec:
                log.info("deleting runner pod %s of %s/%s: older profile spec", name, tenant, workspace)
                await self.api.delete_pod(name)
                continue
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

    async def _cold_start(self, launcher: PodLauncher, tenant: str, workspace: str) -> LaunchedPod:
        started = time.perf_counter()
        try:
            launched = await launcher.launch(tenant=tenant, workspace=workspace)
        except RunnerStartError:
            metrics.RUNNER_START_FAILURES.labels(BACKEND).inc()
            raise
        metrics.RUNNER_COLD_START_SECONDS.labels(BACKEND).observe(time.perf_counter() - started)
        return launched

    def _check_limits(self, tenant: str) -> None:
        cap = self.max_per_tenant_for(tenant)
        if cap is not None:
            mine = [w for t, w in self._held if t == tenant]
            if len(mine) >= cap:
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
