"""A watch on the runner pods of the namespace: readiness and deletion as events, not polls.

List, then watch from the list's resourceVersion; the loop runs in a worker thread (the official
client is synchronous) and hands every change to the event loop. `410 Gone` — as the HTTP status of
the watch request or as an ERROR event in the stream — means the resourceVersion was compacted
away: list again (a full resync: pods missing from the list count as deleted) and watch anew. A
stream the server or the network ends (server timeout, proxy idle cut, API server restart) is
re-watched from the last resourceVersion seen; other errors back off and resync.

Readers get a cache of pods by name (`get()`), a broadcast "something changed" (`changed()`), and
`on_delete` callbacks. Nothing depends on the watch alone: callers still re-read from the API when
no event arrived for a while (PodLauncher.wait_ready), so a silently stuck watch costs latency, not
correctness.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ...kube.listwatch import ListWatch

log = logging.getLogger(__name__)


class PodWatcher(ListWatch):
    what = "runner pod watch"

    def __init__(
        self,
        core: Any,  # kubernetes.client.CoreV1Api
        namespace: str,
        labels: dict[str, str],
        *,
        read_timeout_s: float = 60.0,
        server_timeout_s: int = 300,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        super().__init__(
            read_timeout_s=read_timeout_s, server_timeout_s=server_timeout_s, backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
        )  # fmt: skip
        self.core = core
        self.namespace = namespace
        self.selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        self.labels = labels
        self.pods: dict[str, dict[str, Any]] = {}
        self.on_delete: list[Callable[[str], None]] = []
        self._task: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()

    # -- readers (event loop) ---------------------------------------------------------------------
    def get(self, name: str) -> dict[str, Any] | None:
        return self.pods.get(name)

    async def changed(self, timeout_s: float) -> bool:
        """Wait until any runner pod changes (True) or `timeout_s` passes (False)."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _publish(self, deleted: list[str]) -> None:
        # Runs on the event loop: wake every waiter, then start a fresh event for the next change.
        event, self._changed = self._changed, asyncio.Event()
        event.set()
        for name in deleted:
            for callback in list(self.on_delete):
                try:
                    callback(name)
                except Exception:
                    log.exception("pod delete listener failed", extra={"pod": name})

    def _emit(self, deleted: list[str] | None = None) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._publish, deleted or [])

    # -- list + watch (worker thread) -------------------------------------------------------------
    def _ours(self, pod: dict[str, Any]) -> bool:
        # The selector is the server's job; kmock (and a lax proxy) may not apply it to watches.
        labels = (pod.get("metadata") or {}).get("labels") or {}
        return all(labels.get(k) == v for k, v in self.labels.items())

    def resync(self) -> None:
        listing = self.core.list_namespaced_pod(
            self.namespace, label_selector=self.selector, _request_timeout=(5, 30)
        )
        data = self.core.api_client.sanitize_for_serialization(listing)
        self.lists += 1
        fresh = {p["metadata"]["name"]: p for p in data.get("items") or [] if self._ours(p)}
        deleted = sorted(set(self.pods) - set(fresh))
        self.pods = fresh
        self.resource_version = (data.get("metadata") or {}).get("resourceVersion")
        self.synced.set()
        self._emit(deleted)

    def open_watch(self, **kwargs: Any) -> Any:
        return self.core.list_namespaced_pod(self.namespace, label_selector=self.selector, **kwargs)

    def on_event(self, event_type: str, obj: dict[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name")
        if not name or not self._ours(obj):
            return
        if event_type == "DELETED":
            self.pods.pop(name, None)
            self._emit([name])
        else:
            self.pods[name] = obj
            self._emit()

    # -- lifecycle (event loop) -------------------------------------------------------------------
    def start(self) -> None:
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._task = asyncio.ensure_future(asyncio.to_thread(self.run))

    async def stop(self) -> None:
        self.stop_stream()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
