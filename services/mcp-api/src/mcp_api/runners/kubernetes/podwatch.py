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
import http.client
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)
GONE = 410


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class PodWatcher:
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
        self.core = core
        self.namespace = namespace
        self.selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        self.labels = labels
        self.read_timeout_s = read_timeout_s
        self.server_timeout_s = server_timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.pods: dict[str, dict[str, Any]] = {}
        self.resource_version: str | None = None
        self.on_delete: list[Callable[[str], None]] = []
        self.synced = threading.Event()
        self.lists = 0  # full resyncs (1 at start, +1 per 410 or error)
        self.watches = 0  # watch requests made
        self.expired = 0  # 410s seen
        self.disconnects = 0  # streams cut mid-way, re-watched from the last resourceVersion
        self.failures = 0  # other errors retried with back-off (and a full resync)
        self._stop = threading.Event()
        self._resp: Any = None
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

    def watch_once(self) -> None:
        """One watch request, until the server ends it, the read times out, or we are stopped."""
        kwargs: dict[str, Any] = {
            "label_selector": self.selector,
            "watch": True,
            "allow_watch_bookmarks": True,
            "timeout_seconds": self.server_timeout_s,
            "_preload_content": False,
            "_request_timeout": (5, self.read_timeout_s),
        }
        if self.resource_version:
            kwargs["resource_version"] = self.resource_version
        self.watches += 1
        try:
            resp = self.core.list_namespaced_pod(self.namespace, **kwargs)
        except ApiException as exc:
            if exc.status == GONE:
                raise WatchExpired(exc.reason) from exc
            raise
        self._resp = resp
        try:
            if self._stop.is_set():
                # stop() ran while the request was being made and saw no response to shut down.
                return
            for line in iter_resp_lines(resp):
                if self._stop.is_set():
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                etype, obj = event.get("type"), event.get("object") or {}
                if etype == "ERROR":
                    if obj.get("code") == GONE:
                        raise WatchExpired(obj.get("message", "watch expired"))
                    raise ApiException(status=obj.get("code") or 500, reason=obj.get("message"))
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    self.resource_version = rv
                name = (obj.get("metadata") or {}).get("name")
                if not name or etype == "BOOKMARK" or not self._ours(obj):
                    continue
                if etype == "DELETED":
                    self.pods.pop(name, None)
                    self._emit([name])
                elif etype in ("ADDED", "MODIFIED"):
                    self.pods[name] = obj
                    self._emit()
        finally:
            self._resp = None
            resp.close()
            resp.release_conn()

    def run(self) -> None:
        """Blocking loop (a worker thread); returns after `stop()`."""
        backoff = self.backoff_s
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self.resync()
                    need_list = False
                self.watch_once()  # returns when the stream ends: watch again from resource_version
                backoff = self.backoff_s
            except WatchExpired as exc:
                self.expired += 1
                log.info("runner pod watch expired (410); listing again", extra={"reason": str(exc)})
                self.resource_version = None
                need_list = True
            except Exception as exc:
                if self._stop.is_set():
                    return
                if _is_read_timeout(exc):
                    continue  # an idle stream: watch again from the same resourceVersion
                if _is_disconnect(exc) and not need_list:
                    # The stream was cut (proxy idle timeout, API server restart, network): watch again
                    # from the last resourceVersion; the events since then are replayed or a 410 says
                    # they are gone and we list. A failing reconnect lands below, with back-off.
                    self.disconnects += 1
                    log.info("runner pod watch disconnected; watching again", extra={"error": repr(exc)})
                    continue
                self.failures += 1
                log.warning("runner pod watch failed (%r); retrying in %.1fs", exc, backoff)
                need_list = True
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff_s)

    # -- lifecycle (event loop) -------------------------------------------------------------------
    def start(self) -> None:
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._task = asyncio.ensure_future(asyncio.to_thread(self.run))

    async def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            try:  # unblock the thread's read now instead of after read_timeout_s
                resp.shutdown()
            except Exception:  # noqa: S110  # nosec B110 - best effort; the read timeout still ends it
                pass
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def restart_stream(self) -> None:
        """End the current stream as a network cut would (tests, and a manual nudge)."""
        resp = self._resp
        if resp is not None:
            try:
                resp.shutdown()
            except Exception:  # noqa: S110  # nosec B110 - best effort
                pass


def _is_disconnect(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(
            exc, urllib3.exceptions.ProtocolError | ConnectionResetError | http.client.IncompleteRead
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _is_read_timeout(exc: BaseException | None) -> bool:
    while exc is not None:
        if "ReadTimeout" in type(exc).__name__ or "timed out" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
