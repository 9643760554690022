"""Warm pool: N idle, ready runner pods per profile, claimed atomically across mcp-api replicas.

A claim is a PATCH that carries the pod's `metadata.resourceVersion`: the API server applies it only
if nobody changed the pod since we read it, otherwise it answers 409 and we try the next pod. So two
replicas never get the same pod. A background task refills the pool and reaps claimed pods that
have been idle too long; when the pool is empty a claim falls back to a cold start.

The token of a warm pod is in its Secret; the replica that started the pod keeps it in memory,
any other replica that claims the pod reads the Secret (RBAC: secrets create/get/delete only).
Replicas refilling at once may overshoot `size`; the refill trims the surplus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ...observability import metrics
from .launcher import (
    Conflict,
    KubeApi,
    KubeApiError,
    LaunchedPod,
    NotFound,
    PodLauncher,
    pod_failed,
    pod_ready,
)
from .pods import (
    CLAIMED_AT_ANNOTATION,
    STATE_LABEL,
    WORKSPACE_ANNOTATION,
    PodOptions,
    pool_labels,
    workspace_labels,
)

log = logging.getLogger(__name__)
LAUNCHER_LABEL = "secure-agent.dev/launcher"
BACKEND = "kubernetes"


@dataclass
class WarmPool:
    api: KubeApi
    launcher: PodLauncher
    options: PodOptions
    size: int
    launcher_id: str
    refill_interval_s: float = 5.0
    _tokens: dict[str, str] = field(default_factory=dict)  # warm pod name -> token
    _task: asyncio.Task | None = None
    _refill_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.launcher.extra_labels = {LAUNCHER_LABEL: self.launcher_id}

    def selector(self) -> dict[str, str]:
        return {**pool_labels(self.options), STATE_LABEL: "warm"}

    async def warm_pods(self) -> list[dict[str, Any]]:
        return await self.api.list_pods(self.selector())

    async def claim(self, tenant: str, workspace: str) -> LaunchedPod | None:
        """Claim one ready warm pod for the workspace, or None when there is none to claim."""
        started = time.perf_counter()
        candidates = [p for p in await self.warm_pods() if pod_ready(p)]
        # Our own pods first (their token is at hand), then the oldest.
        candidates.sort(key=lambda p: (p["metadata"]["name"] not in self._tokens, _created(p)))
        for pod in candidates:
            meta = pod["metadata"]
            name = meta["name"]
            patch = {
                "metadata": {
                    "resourceVersion": meta.get("resourceVersion"),
                    "labels": {STATE_LABEL: "claimed", **workspace_labels(tenant, workspace)},
                    "annotations": {
                        WORKSPACE_ANNOTATION: f"{tenant}/{workspace}",
                        CLAIMED_AT_ANNOTATION: datetime.now(UTC).isoformat(),
                    },
                }
            }
            try:
                claimed = await self.api.patch_pod(name, patch)
            except (Conflict, NotFound):
                log.info("warm pod %s was claimed or removed by someone else; trying the next", name)
                continue
            token = self._tokens.pop(name, None)
            if token is None:
                try:
                    token = await self.api.read_token(name)
                except KubeApiError as exc:
                    log.error("claimed warm pod %s but cannot read its token: %s; deleting it", name, exc)
                    await self.api.delete_pod(name)
                    continue
            metrics.RUNNER_CLAIM_SECONDS.labels(BACKEND).observe(time.perf_counter() - started)
            self.kick()
            ip = (claimed.get("status") or {}).get("podIP") or pod["status"]["podIP"]
            return LaunchedPod(name=name, ip=ip, port=self.options.port, token=token, pod=claimed)
        return None

    async def refill(self) -> int:
        """Start pods until `size` warm ones exist (ready or starting); returns how many started."""
        async with self._refill_lock:
            warm = await self.warm_pods()
            names = {p["metadata"]["name"] for p in warm}
            for name in list(self._tokens):
                if name not in names:
                    self._tokens.pop(name)
            alive = []
            for pod in warm:
                if pod_failed(pod):  # a warm pod that died (evicted, image gone): replace it
                    await self.api.delete_pod(pod["metadata"]["name"])
                    self._tokens.pop(pod["metadata"]["name"], None)
                else:
                    alive.append(pod)
            surplus = len(alive) - self.size
            if surplus > 0:  # replicas refilled at once: remove the newest of ours
                mine = sorted((p for p in alive if p["metadata"]["name"] in self._tokens), key=_created)
                for pod in mine[::-1][:surplus]:
                    await self.api.delete_pod(pod["metadata"]["name"])
                    self._tokens.pop(pod["metadata"]["name"], None)
            missing = self.size - len(alive)
            self._set_gauges(len(alive))
            if missing <= 0:
                return 0
            results = await asyncio.gather(
                *(self._start_one() for _ in range(missing)), return_exceptions=True
            )
            for r in results:
                if isinstance(r, BaseException):
                    log.warning("warm pool refill: %s", r)
            started = sum(1 for r in results if not isinstance(r, BaseException))
            self._set_gauges(len(alive) + started)
            return started

    async def _start_one(self) -> None:
        started = time.perf_counter()
        try:
            launched = await self.launcher.launch()
        except Exception:
            metrics.RUNNER_START_FAILURES.labels(BACKEND).inc()
            raise
        metrics.RUNNER_COLD_START_SECONDS.labels(BACKEND).observe(time.perf_counter() - started)
        self._tokens[launched.name] = launched.token

    def _set_gauges(self, warm: int) -> None:
        metrics.RUNNER_POOL.labels(BACKEND, "warm").set(warm)

    def kick(self) -> None:
        """Refill soon, in the background."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._refill_once())

    async def _refill_once(self) -> None:
        try:
            await self.refill()
        except KubeApiError as exc:
            log.warning("warm pool refill failed: %s", exc)

    async def run(self) -> None:
        """Keep the pool full until cancelled."""
        while True:
            await self._refill_once()
            await asyncio.sleep(self.refill_interval_s)

    async def drain(self) -> None:
        """Delete the warm pods this replica started (shutdown); other replicas keep theirs."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._refill_lock:
            for name in list(self._tokens):
                await self.api.delete_pod(name)
            self._tokens.clear()


def _created(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")
