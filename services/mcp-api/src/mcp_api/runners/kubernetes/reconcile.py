"""Reconciler: removes runner pods nobody will use again.

Orphans are (a) pods that ended (Failed/Succeeded: deadline, eviction, OOM), (b) claimed pods whose holder's
heartbeat annotation is older than a grace period (the replica holding them died), and (c) pods stuck not-ready (image pull errors, unschedulable) past the ready timeout.
Warm pods are the pool's business (it replaces failed ones). Secrets go with their pods
(ownerReferences), so deleting a pod is enough.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .launcher import KubeApi, pod_failed, pod_ready
from .pods import APP, APP_LABEL, CLAIMED_AT_ANNOTATION, HEARTBEAT_ANNOTATION, STATE_LABEL

log = logging.getLogger(__name__)


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        value = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Reconciler:
    def __init__(
        self,
        api: KubeApi,
        *,
        held: Callable[[], set[str]],
        claim_grace_s: float = 300.0,
        ready_timeout_s: float = 120.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.held = held  # names of claimed pods some live mcp-api uses (this replica: in memory)
        self.claim_grace_s = claim_grace_s
        self.ready_timeout_s = ready_timeout_s
        self.now = now

    def orphan_reason(self, pod: dict[str, Any], held: set[str]) -> str | None:
        meta = pod.get("metadata") or {}
        name = meta.get("name")
        if meta.get("deletionTimestamp"):
            return None  # already going
        failed = pod_failed(pod)
        if failed:
            return failed
        now = self.now()
        created = _parse(meta.get("creationTimestamp"))
        if not pod_ready(pod) and created and (now - created).total_seconds() > self.ready_timeout_s:
            return f"not ready {int((now - created).total_seconds())}s after creation"
        if (meta.get("labels") or {}).get(STATE_LABEL) == "claimed" and name not in held:
            notes = meta.get("annotations") or {}
            seen = (
                _parse(notes.get(HEARTBEAT_ANNOTATION)) or _parse(notes.get(CLAIMED_AT_ANNOTATION)) or created
            )
            if seen and (now - seen).total_seconds() > self.claim_grace_s:
                return (
                    f"claimed, and no mcp-api renewed its heartbeat for {int((now - seen).total_seconds())}s"
                )
        return None

    async def run_once(self) -> list[str]:
        """Delete orphans; returns their names."""
        held = self.held()
        removed = []
        for pod in await self.api.list_pods({APP_LABEL: APP}):
            reason = self.orphan_reason(pod, held)
            if reason:
                name = pod["metadata"]["name"]
                log.info("reconciler: deleting runner pod %s (%s)", name, reason)
                if await self.api.delete_pod(name):
                    removed.append(name)
        return removed
