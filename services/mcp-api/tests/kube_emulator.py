"""kmock's KubernetesEmulator plus the three API-server behaviours our code relies on that kmock
leaves out: resourceVersion (bumped on every write, and a PATCH carrying a stale one gets 409),
label selectors on lists, and 404 (not 500) for reads of missing objects. Also fault injection:
`faults.append(("PATCH", "/pods/", 429))` makes the next matching request fail once."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import kmock
from kmock._internal import enums
from mcp_api.runners.kubernetes.launcher import KubeApi
from mcp_api.runners.kubernetes.pods import APP, APP_LABEL

NS = "runners"


def _status(code: int, reason: str) -> aiohttp.web.Response:
    return aiohttp.web.json_response(
        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code},
        status=code,
    )


class Emulator(kmock.KubernetesEmulator):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.rv = itertools.count(1)
        self.mutex = asyncio.Lock()
        self.faults: list[tuple[str, str, int]] = []

    def _key(self, request: Any) -> tuple[Any, str | None, str | None]:
        ns = request.namespace or (request.data or {}).get("metadata", {}).get("namespace")
        name = request.name or (request.data or {}).get("metadata", {}).get("name")
        return (request.resource, ns, name)

    def _live(self, key: Any) -> Any:
        if key in self.objects and not self.objects[key].deleted:
            return self.objects[key]
        return None

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        for i, (method, fragment, code) in enumerate(self.faults):
            if getattr(request.method, "value", None) == method and fragment in str(request.url):
                del self.faults[i]
                return _status(code, "Injected")
        if request.resource is None:
            return await super()._handle(request)
        action = request.action
        if action == enums.action.FETCH and not self._live(self._key(request)):
            return _status(404, "NotFound")
        if action == enums.action.DELETE and request.name and not self._live(self._key(request)):
            return _status(404, "NotFound")
        if action not in (enums.action.CREATE, enums.action.UPDATE):
            return await super()._handle(request)
        async with self.mutex:  # check-and-write is atomic, as in etcd
            key = self._key(request)
            obj = self._live(key)
            if action == enums.action.UPDATE:
                if obj is None:
                    return _status(404, "NotFound")
                want = ((request.data or {}).get("metadata") or {}).get("resourceVersion")
                if want is not None and want != obj.get("metadata", {}).get("resourceVersion"):
                    return _status(409, "Conflict")
            elif obj is not None:
                return _status(409, "AlreadyExists")
            if action == enums.action.CREATE:
                meta = request.data.setdefault("metadata", {})
                meta.setdefault("uid", f"uid-{next(self.rv)}")
                meta.setdefault("creationTimestamp", datetime.now(UTC).isoformat())
                meta["resourceVersion"] = str(next(self.rv))
                if "stringData" in request.data:  # the API server stores it base64-encoded in data
                    raw = request.data.pop("stringData")
                    request.data.setdefault("data", {}).update(
                        {k: base64.b64encode(v.encode()).decode() for k, v in raw.items()}
                    )
            else:
                request.data.setdefault("metadata", {})["resourceVersion"] = str(next(self.rv))
            return await super()._handle(request)

    async def _serve_list(self, request: Any) -> Any:
        result = await super()._serve_list(request)
        selector = request.params.get("labelSelector") or ""
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        result["items"] = [
            i for i in result["items"] if all(((i.get("metadata") or {}).get("labels") or {}).get(k) == v
                                              for k, v in wanted.items())
        ]  # fmt: skip
        return result

    # --- test helpers: what a kubelet would do --------------------------------------------------
    def live(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        return [
            dict(obj.raw)
            for (res, ns, _), obj in self.objects.items()
            if res.plural == plural and ns == namespace and not obj.deleted
        ]


@contextlib.asynccontextmanager
async def running():
    emulator = Emulator()
    # kmock lists only declared resources (or ones that have had an object).
    emulator.resources["v1/pods"] = {}
    emulator.resources["v1/secrets"] = {}
    async with kmock.Server(emulator):
        yield emulator


class Kubelet:
    """Plays the kubelet: marks new pods Running and Ready with an IP, by patching pod status
    through the API (kmock schedules nothing). `on_pod` may start a real process for a pod."""

    def __init__(self, kube: KubeApi, ip: str = "127.0.0.1") -> None:
        self.kube = kube
        self.ip = ip
        self.ready = True
        self.status_override: dict[str, Any] | None = None
        self.on_pod: Callable[[dict[str, Any]], Any] | None = None
        self.seen: set[str] = set()
        self._task: asyncio.Task | None = None

    async def tick(self) -> None:
        for pod in await self.kube.list_pods({APP_LABEL: APP}):
            name = pod["metadata"]["name"]
            if name in self.seen:
                continue
            self.seen.add(name)
            if self.on_pod is not None:
                result = self.on_pod(pod)
                if asyncio.iscoroutine(result):
                    await result
            if self.status_override is not None:
                status = self.status_override
            elif self.ready:
                status = {
                    "phase": "Running",
                    "podIP": self.ip,
                    "conditions": [{"type": "Ready", "status": "True"}],
                }
            else:
                status = {"phase": "Pending"}
            await asyncio.to_thread(
                self.kube.core.patch_namespaced_pod_status, name, self.kube.namespace, {"status": status}
            )

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.tick()
            await asyncio.sleep(0.02)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def delete_all(kube: KubeApi) -> None:
    for pod in await kube.list_pods({}):
        await kube.delete_pod(pod["metadata"]["name"])


def status_of(kube: KubeApi, name: str) -> Any:
    return kube.core.read_namespaced_pod(name, kube.namespace)
