"""Kubernetes API access for runner pods: the official client in worker threads, with retries of
safe calls, and the launch of one pod (Secret with its token, pod, wait until it has an IP and is
Ready). A launch that fails deletes what it created: no pod is leaked."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s

from ..base import RunnerStartError
from .pods import TOKEN_KEY, PodOptions, owned_by_pod, runner_pod, token_secret

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE = {429, 500, 502, 503, 504}
WATCH_RECHECK_S = 2.0


class KubeApiError(RuntimeError):
    """A Kubernetes API call failed; `status` is the HTTP status (0 for a network error/timeout)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Conflict(KubeApiError):
    """409: someone else changed the object first (optimistic concurrency) or it already exists."""


class NotFound(KubeApiError):
    """404 (or 410 for a watch): the object is gone."""


def api_client(
    api_url: str | None = None, *, in_cluster: bool = True, timeout_s: float = 10.0
) -> k8s.ApiClient:
    from kubernetes import config

    if api_url:
        cfg = k8s.Configuration()
        cfg.host = api_url.rstrip("/")
    elif in_cluster:
        cfg = k8s.Configuration()
        config.load_incluster_config(client_configuration=cfg)
    else:
        cfg = k8s.Configuration()
        config.load_kube_config(client_configuration=cfg)
    cfg.retries = False  # we retry ourselves, only where it is safe
    return k8s.ApiClient(cfg)


class KubeApi:
    """Pod and Secret calls in one namespace. Reads, deletes and conditional patches are retried
    after 429/5xx/timeouts (they are idempotent or guarded by resourceVersion); creates are retried
    only because the names are unique and a 409 on retry is resolved by reading the object."""

    def __init__(
        self, api: k8s.ApiClient, namespace: str, *, retries: int = 4, timeout_s: float = 10.0,
        backoff_s: float = 0.2,
    ) -> None:  # fmt: skip
        self.core = k8s.CoreV1Api(api)
        self.api = api
        self.namespace = namespace
        self.retries = retries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        attempt = 0
        while True:
            try:
                return await asyncio.to_thread(fn, *args, _request_timeout=self.timeout_s, **kwargs)
            except k8s.ApiException as exc:
                status = exc.status or 0
                if status == 409:
                    raise Conflict(f"{what}: conflict ({exc.reason})", 409) from exc
                if status in (404, 410):
                    raise NotFound(f"{what}: not found ({exc.reason})", status) from exc
                if status not in RETRYABLE or attempt >= self.retries:
                    raise KubeApiError(f"{what}: Kubernetes API error {status} {exc.reason}", status) from exc
                delay = _retry_after(exc) or self.backoff_s * 2**attempt
            except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
                if attempt >= self.retries:
                    raise KubeApiError(f"{what}: Kubernetes API unreachable: {exc}", 0) from exc
                delay = self.backoff_s * 2**attempt
            attempt += 1
            log.warning("kubernetes %s failed, retry %d in %.1fs", what, attempt, delay)
            await asyncio.sleep(delay)

    async def create_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        name = pod["metadata"]["name"]
        try:
            created = await self._call(
                f"create pod {name}", self.core.create_namespaced_pod, self.namespace, pod
            )
        except Conflict:
            # Our own earlier attempt may have succeeded before its response was lost.
            return await self.get_pod(name)
        return self.api.sanitize_for_serialization(created)

    async def create_secret(self, secret: dict[str, Any]) -> None:
        name = secret["metadata"]["name"]
        try:
            await self._call(
                f"create secret {name}", self.core.create_namespaced_secret, self.namespace, secret
            )
        except Conflict:
            pass

    async def read_token(self, name: str) -> str:
        secret = await self._call(
            f"read secret {name}", self.core.read_namespaced_secret, name, self.namespace
        )
        data = (secret.data or {}).get(TOKEN_KEY)
        if not data:
            raise NotFound(f"secret {name} has no token", 404)
        return base64.b64decode(data).decode().strip()

    async def get_pod(self, name: str) -> dict[str, Any]:
        pod = await self._call(f"read pod {name}", self.core.read_namespaced_pod, name, self.namespace)
        return self.api.sanitize_for_serialization(pod)

    async def list_pods(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        result = await self._call(
            "list pods", self.core.list_namespaced_pod, self.namespace, label_selector=selector
        )
        pods = self.api.sanitize_for_serialization(result).get("items") or []
        # The selector is the server's job; checking again costs nothing and guards a lax server.
        return [p for p in pods if _matches((p.get("metadata") or {}).get("labels") or {}, labels)]

    async def patch_pod(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        pod = await self._call(
            f"patch pod {name}", self.core.patch_namespaced_pod, name, self.namespace, patch
        )
        return self.api.sanitize_for_serialization(pod)

    async def delete_pod(self, name: str) -> bool:
        """Delete a pod; False when it was already gone."""
        try:
            await self._call(
                f"delete pod {name}", self.core.delete_namespaced_pod, name, self.namespace,
                grace_period_seconds=5,
            )  # fmt: skip
        except NotFound:
            return False
        return True

    async def delete_secret(self, name: str) -> None:
        try:
            await self._call(
                f"delete secret {name}", self.core.delete_namespaced_secret, name, self.namespace
            )
        except NotFound:
            pass


def _retry_after(exc: k8s.ApiException) -> float | None:
    value = (exc.headers or {}).get("Retry-After") if exc.headers else None
    try:
        return min(float(value), 10.0) if value else None
    except ValueError:
        return None


def _matches(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def pod_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or not status.get("podIP"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def pod_failed(pod: dict[str, Any]) -> str | None:
    """Why the pod can never become ready, or None while it still may."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Failed", "Succeeded"):
        return f"pod {status.get('phase').lower()}: {status.get('reason') or status.get('message') or ''}".strip()
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "pod is being deleted"
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in (
            "ErrImagePull",
            "ImagePullBackOff",
            "InvalidImageName",
            "CreateContainerConfigError",
        ):
            return f"container {cs.get('name')}: {waiting['reason']}: {waiting.get('message', '')}".strip()
    return None


@dataclass
class LaunchedPod:
    name: str
    ip: str
    port: int
    token: str
    pod: dict[str, Any]

    @property
    def base_url(self) -> str:
        return f"http://{self.ip}:{self.port}"


class PodLauncher:
    def __init__(
        self, api: KubeApi, options: PodOptions, *, ready_timeout_s: float = 120.0, poll_s: float = 0.5
    ):
        self.api = api
        self.options = options
        self.ready_timeout_s = ready_timeout_s
        self.poll_s = poll_s
        self.extra_labels: dict[str, str] = {}
        # The backend's PodWatcher (podwatch.py), when running: readiness arrives as a watch event.
        self.watcher: Any = None

    @staticmethod
    def new_name() -> str:
        return f"agent-runner-{secrets.token_hex(6)}"

    async def launch(self, *, tenant: str | None = None, workspace: str | None = None) -> LaunchedPod:
        """Create a token Secret and a pod, wait until Ready; on any failure delete both."""
        name = self.new_name()
        token = secrets.token_urlsafe(32)
        pod = runner_pod(name, name, self.options, tenant=tenant, workspace=workspace)
        pod["metadata"]["labels"].update(self.extra_labels)
        secret = token_secret(name, token, self.options)
        # A cancelled await does not stop the worker thread of a create: it may still land. So the
        # creates run as tasks the cleanup waits for before deleting, else a pod could slip past it.
        inflight: list[asyncio.Future] = []
        try:
            # The pod first, so that the Secret can be owned by it (and go with it).
            inflight.append(asyncio.ensure_future(self.api.create_pod(pod)))
            created_pod = await asyncio.shield(inflight[-1])
            if (created_pod.get("metadata") or {}).get("uid"):
                secret["metadata"]["ownerReferences"] = [owned_by_pod(created_pod)]
            inflight.append(asyncio.ensure_future(self.api.create_secret(secret)))
            await asyncio.shield(inflight[-1])
            ready = await self.wait_ready(name)
        except BaseException as exc:
            await self._cleanup(name, inflight)
            if isinstance(exc, RunnerStartError | asyncio.CancelledError):
                raise
            raise RunnerStartError(f"runner pod {name} could not be started: {exc}") from exc
        ip = ready["status"]["podIP"]
        return LaunchedPod(name=name, ip=ip, port=self.options.port, token=token, pod=ready)

    async def wait_ready(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.ready_timeout_s
        from_watch = False
        while True:
            pod = self.watcher.get(name) if from_watch else None
            if pod is None:  # no watch, no event yet, or no news for a while: ask the API
                try:
                    pod = await self.api.get_pod(name)
                except NotFound:
                    raise RunnerStartError(f"runner pod {name} was deleted before it became ready") from None
            if pod_ready(pod):
                return pod
            reason = pod_failed(pod)
            if reason:
                raise RunnerStartError(f"runner pod {name} cannot start: {reason}")
            if time.monotonic() >= deadline:
                raise RunnerStartError(
                    f"runner pod {name} was not ready after {self.ready_timeout_s:.0f}s "
                    f"(phase {(pod.get('status') or {}).get('phase', 'unknown')}); it has been removed"
                )
            watcher = self.watcher
            if watcher is not None and watcher.synced.is_set():
                # Woken by any runner pod event; a quiet spell re-reads the pod from the API, so a
                # stuck watch costs at most WATCH_RECHECK_S of latency.
                remaining = max(0.0, deadline - time.monotonic())
                from_watch = await watcher.changed(min(WATCH_RECHECK_S, remaining))
            else:
                await asyncio.sleep(self.poll_s)

    async def _cleanup(self, name: str, inflight: list[asyncio.Future]) -> None:
        # Shielded: a cancelled caller must still not leak the pod.
        async def _do() -> None:
            await asyncio.gather(*inflight, return_exceptions=True)
            try:
                await self.api.delete_pod(name)
                await self.api.delete_secret(name)
            except KubeApiError as exc:  # the reconciler will remove it later
                log.error("could not clean up runner pod %s: %s", name, exc)

        if inflight:
            await asyncio.shield(_do())
