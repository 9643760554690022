"""AgentProfile custom resources on Kubernetes: list, watch, apply live, write status.

The official `kubernetes` client is synchronous, so `ProfileWatcher.run()` blocks and runs in a
worker thread (`start()`/`stop()` wrap that for asyncio). The loop: list the namespace's
AgentProfiles (a full resync: profiles missing from the list are removed), then watch from the
list's resourceVersion. `410 Gone` — as an HTTP status or as an ERROR event in the stream — means
the resourceVersion expired: list again and re-watch. Other API errors back off and retry.

For each object the spec goes through `ProfileRegistry.apply()`; status is then patched (status
subresource, merge patch) with `observedGeneration`, `appliedGeneration` and two conditions:
`Invalid` (True with reason `ValidationFailed` and the errors when the spec does not validate) and
`Ready` (True while a good spec is in force — the last good one when the newest is invalid).
Status is written only when it differs, so our own status update (a MODIFIED event) ends there.

kmock recognises only `?watch=true`; the `kubernetes` client 37 already serialises booleans in
lowercase, so `watch=True` here reaches it (and a real API server) as `watch=true`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from ..kube.listwatch import ListWatch
from .model import GROUP, PLURAL, VERSION, now
from .registry import ApplyResult, ProfileRegistry

log = logging.getLogger(__name__)


def _condition(
    ctype: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    same = previous is not None and previous.get("status") == status
    cond = {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": previous["lastTransitionTime"]
        if same and previous.get("lastTransitionTime")
        else now().isoformat().replace("+00:00", "Z"),
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def desired_status(
    current: dict[str, Any] | None, result: ApplyResult, applied_generation: int | None, in_force: bool
) -> dict[str, Any]:
    previous = {c.get("type"): c for c in (current or {}).get("conditions") or [] if isinstance(c, dict)}
    gen = result.generation
    if result.valid:
        invalid = _condition("Invalid", "False", "Valid", "spec is valid", gen, previous.get("Invalid"))
        ready = _condition("Ready", "True", "Applied", "spec is in force", gen, previous.get("Ready"))
    else:
        invalid = _condition("Invalid", "True", result.reason, result.message, gen, previous.get("Invalid"))
        if in_force:
            msg = f"the last good spec (generation {applied_generation}) stays in force"
            ready = _condition("Ready", "True", "LastGoodSpecInForce", msg, gen, previous.get("Ready"))
        else:
            ready = _condition(
                "Ready", "False", "NoValidSpec", "no valid spec has been seen", gen, previous.get("Ready")
            )
    status: dict[str, Any] = {"conditions": [ready, invalid]}
    if gen is not None:
        status["observedGeneration"] = gen
    if applied_generation is not None:
        status["appliedGeneration"] = applied_generation
    return status


def _comparable(status: dict[str, Any] | None) -> Any:
    status = dict(status or {})
    conds = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.pop("conditions", None) or []
    ]
    return status, sorted(conds, key=lambda c: str(c.get("type")))


class ProfileWatcher(ListWatch):
    what = "profile watch"

    def __init__(
        self,
        api_client: k8s.ApiClient,
        registry: ProfileRegistry,
        namespace: str,
        *,
        read_timeout_s: float = 60.0,
        server_timeout_s: int = 300,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        super().__init__(
            read_timeout_s=read_timeout_s, server_timeout_s=server_timeout_s, backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
        )  # fmt: skip
        self.api = k8s.CustomObjectsApi(api_client)
        self.registry = registry
        self.namespace = namespace
        self._thread_task: asyncio.Future | None = None
        self.status_writes = 0

    # -- one object -------------------------------------------------------------------------------
    def on_event(self, event_type: str, obj: dict[str, Any]) -> None:
        self.handle(event_type, obj)

    def handle(self, event_type: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            return
        if event_type == "DELETED":
            self.registry.remove(name)
            return
        generation = meta.get("generation") if isinstance(meta.get("generation"), int) else None
        result = self.registry.apply(
            name, obj.get("spec"), generation=generation, source=f"k8s:{self.namespace}/{name}"
        )
        state = self.registry.state(name)
        in_force = state is not None and state.spec is not None
        applied = state.applied_generation if state is not None else None
        status = desired_status(obj.get("status"), result, applied, in_force)
        if _comparable(status) == _comparable(obj.get("status")):
            return
        try:
            self.api.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                name,
                {"status": status},
                _request_timeout=(5, 10),
            )
            self.status_writes += 1
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report on
                log.warning("profile status update failed", extra={"profile": name, "status": exc.status})

    # -- list + watch -----------------------------------------------------------------------------
    def resync(self) -> None:
        listing = self.api.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, _request_timeout=(5, 30)
        )
        self.lists += 1
        items = listing.get("items") or []
        present = set()
        for obj in items:
            present.add((obj.get("metadata") or {}).get("name"))
            self.handle("ADDED", obj)
        for name in self.registry.names():
            state = self.registry.state(name)
            if name not in present and state is not None and state.source.startswith("k8s:"):
                self.registry.remove(name)
        self.resource_version = (listing.get("metadata") or {}).get("resourceVersion")
        self.synced.set()

    def open_watch(self, **kwargs: Any) -> Any:
        return self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, **kwargs)

    async def start(self) -> None:
        self._stop.clear()
        self._thread_task = asyncio.ensure_future(asyncio.to_thread(self.run))

    async def stop(self) -> None:
        self.stop_stream()
        if self._thread_task is not None:
            await self._thread_task
            self._thread_task = None

    async def wait_synced(self, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.synced.is_set():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True
