"""Per-AgentProfile runner egress: one NetworkPolicy per profile whose `spec.sandbox.egress` lists
rules, in the runner namespace, next to the chart's default-deny policy (NetworkPolicies add up: a
runner pod may reach what some policy selecting it allows).

Each policy (manifests.profile_egress_policy) selects the profile's runner pods by the profile label
pods.py sets, has policyTypes [Egress] and exactly the profile's rules (no implicit DNS: a profile
that needs DNS lists the cluster DNS service's network and port 53). It is labelled
`secure-agent.dev/managed-by=secure-agent-mcp-api`; the reconciler lists, patches and deletes only
objects with that label, so an operator's own NetworkPolicy is never touched, even one of the same
name (then the profile's egress is not applied and a warning says why).

Every replica runs the reconciler; they converge on the same objects without coordination: a
create that meets 409 reads the object and patches it, a patch carries the `resourceVersion` it was
computed from (a 409 means another replica wrote first: read again, and usually there is nothing
left to do), a delete carries the uid and resourceVersion it saw as preconditions. API calls go
through KubeApi._call: 429/5xx/timeouts are retried (creates of a fixed name, guarded patches and
deletes are all safe to repeat).

A sync runs when the profile registry reports a change of a spec in force, and every
`interval_s` (repairs drift, e.g. a hand-edited policy, and retries after API errors). Nothing is
deleted before the profile source has been read once (ProfileService.synced()): an empty registry
at start-up means "not known yet", not "no profile has egress".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubernetes import client as k8s

from .launcher import Conflict, KubeApi, KubeApiError, NotFound
from .manifests import MANAGED_BY, MANAGED_BY_LABEL, PROFILE_ANNOTATION, egress_rule, profile_egress_policy

if TYPE_CHECKING:
    from ...profiles.service import ProfileService

log = logging.getLogger(__name__)
ATTEMPTS = 5  # reads and writes of one policy before a sync gives up on it (till the next sync)


def desired_policies(profiles: ProfileService, namespace: str) -> dict[str, dict[str, Any]]:
    """Policy name -> manifest, one per profile in force (its last good spec) that lists egress."""
    registry = profiles.registry
    out: dict[str, dict[str, Any]] = {}
    for name in registry.names():
        state = registry.state(name)
        if state is None or state.spec is None or not state.spec.sandbox.egress:
            continue
        rules = [egress_rule(r.cidr, r.ports, r.protocol) for r in state.spec.sandbox.egress]
        policy = profile_egress_policy(namespace, name, rules)
        out[policy["metadata"]["name"]] = policy
    return out


def managed(obj: dict[str, Any]) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY


def merge_patch(current: Any, desired: Any) -> Any:
    """An RFC 7386 merge patch turning `current` into `desired` (keys only in `current` -> None;
    lists are replaced whole, as both merge and strategic-merge patches of a NetworkPolicy do)."""
    if not isinstance(current, dict) or not isinstance(desired, dict):
        return desired
    patch = {key: None for key in current if key not in desired}
    for key, value in desired.items():
        if current.get(key) != value:
            patch[key] = merge_patch(current.get(key), value)
    return patch


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    patched: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # a NetworkPolicy of that name is not ours


class EgressPolicies:
    def __init__(
        self,
        api: KubeApi,
        profiles: ProfileService,
        *,
        interval_s: float = 30.0,
        desired: Callable[[], dict[str, dict[str, Any]]] | None = None,
    ) -> None:
        self.api = api
        self.net = k8s.NetworkingV1Api(api.api)
        self.namespace = api.namespace
        self.profiles = profiles
        self.interval_s = interval_s
        self.desired = desired or (lambda: desired_policies(profiles, self.namespace))
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._warned: set[str] = set()

    # --- API calls (retried by KubeApi._call where safe) ----------------------------------------
    async def _list(self) -> list[dict[str, Any]]:
        result = await self.api._call(
            "list networkpolicies", self.net.list_namespaced_network_policy, self.namespace,
            label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}",
        )  # fmt: skip
        items = self.api.api.sanitize_for_serialization(result).get("items") or []
        return [item for item in items if managed(item)]  # the selector again: guards a lax server

    async def _read(self, name: str) -> dict[str, Any] | None:
        try:
            obj = await self.api._call(
                f"read networkpolicy {name}", self.net.read_namespaced_network_policy, name, self.namespace
            )
        except NotFound:
            return None
        return self.api.api.sanitize_for_serialization(obj)

    # --- one sync --------------------------------------------------------------------------------
    async def sync_once(self) -> SyncResult:
        """Create, patch and delete our NetworkPolicies until they are what the profiles say."""
        result = SyncResult()
        if not self.profiles.synced():
            return result  # an empty registry now means "not read yet": change nothing
        wanted = self.desired()
        existing = {p["metadata"]["name"]: p for p in await self._list()}
        errors: list[str] = []
        for name, manifest in wanted.items():
            try:
                await self._ensure(manifest, existing.get(name), result)
            except KubeApiError as exc:  # one policy's trouble must not stop the others
                errors.append(str(exc))
        for name, current in existing.items():
            if name not in wanted:
                try:
                    await self._delete(current, result)
                except KubeApiError as exc:
                    errors.append(str(exc))
        for verb in ("created", "patched", "deleted"):
            for name in getattr(result, verb):
                log.info("runner egress NetworkPolicy %s/%s %s", self.namespace, name, verb)
        if errors:
            raise KubeApiError("; ".join(errors))
        return result

    async def _ensure(
        self, manifest: dict[str, Any], current: dict[str, Any] | None, result: SyncResult
    ) -> None:
        name = manifest["metadata"]["name"]
        for _ in range(ATTEMPTS):
            if current is None:
                try:
                    await self.api._call(
                        f"create networkpolicy {name}", self.net.create_namespaced_network_policy,
                        self.namespace, manifest,
                    )  # fmt: skip
                except Conflict:  # another replica (or an operator) was first: look at theirs
                    current = await self._read(name)
                    continue
                result.created.append(name)
                return
            if not managed(current):
                result.foreign.append(name)
                if name not in self._warned:
                    self._warned.add(name)
                    log.warning(
                        "NetworkPolicy %s/%s exists and is not managed by mcp-api (no %s=%s label): "
                        "left alone, so the egress of profile %s is not applied; rename or remove it",
                        self.namespace, name, MANAGED_BY_LABEL, MANAGED_BY,
                        manifest["metadata"]["annotations"].get(PROFILE_ANNOTATION),
                    )  # fmt: skip
                return
            self._warned.discard(name)
            patch = self._patch_for(current, manifest)
            if patch is None:
                return
            try:
                await self.api._call(
                    f"patch networkpolicy {name}", self.net.patch_namespaced_network_policy, name,
                    self.namespace, patch,
                )  # fmt: skip
            except Conflict:  # changed since we read it: read again and recompute
                current = await self._read(name)
                continue
            except NotFound:  # deleted meanwhile: create it again
                current = None
                continue
            result.patched.append(name)
            return
        raise KubeApiError(f"networkpolicy {name}: still changing under us after {ATTEMPTS} attempts", 409)

    @staticmethod
    def _patch_for(current: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any] | None:
        meta, want = current.get("metadata") or {}, manifest["metadata"]
        labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
        stale_labels = {k: v for k, v in want["labels"].items() if labels.get(k) != v}
        stale_notes = {k: v for k, v in want["annotations"].items() if notes.get(k) != v}
        spec = current.get("spec") or {}
        if not stale_labels and not stale_notes and spec == manifest["spec"]:
            return None
        patch: dict[str, Any] = {"metadata": {"resourceVersion": meta.get("resourceVersion")}}
        if stale_labels:
            patch["metadata"]["labels"] = stale_labels
        if stale_notes:
            patch["metadata"]["annotations"] = stale_notes
        if spec != manifest["spec"]:
            patch["spec"] = merge_patch(spec, manifest["spec"])
        return patch

    async def _delete(self, current: dict[str, Any], result: SyncResult) -> None:
        meta = current["metadata"]
        name = meta["name"]
        # Preconditions: delete exactly what we saw (another replica may have just re-created it).
        options = k8s.V1DeleteOptions(
            preconditions=k8s.V1Preconditions(
                uid=meta.get("uid"), resource_version=meta.get("resourceVersion")
            )
        )
        try:
            await self.api._call(
                f"delete networkpolicy {name}", self.net.delete_namespaced_network_policy, name,
                self.namespace, body=options,
            )  # fmt: skip
        except (NotFound, Conflict):
            return  # gone already, or changed since: the next sync looks again
        result.deleted.append(name)

    # --- background ------------------------------------------------------------------------------
    def _changed(self, _profile: str) -> None:
        """Registry listener; may be called from the profile watch's thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self.profiles.registry.subscribe(self._changed)
        self._task = self._loop.create_task(self.run(), name="secure-agent-runner-egress")

    async def run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                await self.sync_once()
                failures = 0
                delay = self.interval_s if self.profiles.synced() else min(self.interval_s, 1.0)
            except Exception as exc:  # an API outage or missing RBAC must not end the loop
                failures += 1
                delay = min(self.interval_s, 0.5 * 2**failures)
                log.warning("runner egress NetworkPolicy sync failed (retry in %.1fs): %s", delay, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def stop(self) -> None:
        """Stop following profiles. The policies stay: other replicas and the pods still need them."""
        self.profiles.registry.unsubscribe(self._changed)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._loop = None
