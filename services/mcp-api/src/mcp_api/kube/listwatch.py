"""List, then watch from the list's resourceVersion, in a worker thread (the official client is
synchronous), for as long as it runs.

`410 Gone` — as the HTTP status of the watch request or as an ERROR event in the stream — means the
resourceVersion was compacted away: list again (a full resync) and watch anew. A stream the server
or the network ends (server timeout, proxy idle cut, API server restart) is re-watched from the last
resourceVersion seen; an idle read timeout likewise; other errors back off and resync.

Subclasses say what to list (`resync`), how to open the watch (`open_watch`) and what an event means
(`on_event`); `what` names the watch in logs.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)
GONE = 410


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class ListWatch:
    what = "watch"

    def __init__(
        self,
        *,
        read_timeout_s: float = 60.0,
        server_timeout_s: int = 300,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.read_timeout_s = read_timeout_s
        self.server_timeout_s = server_timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.resource_version: str | None = None
        self.synced = threading.Event()  # set after the first list
        self.lists = 0  # full resyncs (1 at start, +1 per 410 or error)
        self.watches = 0  # watch requests made
        self.expired = 0  # 410s seen
        self.disconnects = 0  # streams cut mid-way, re-watched from the last resourceVersion
        self.failures = 0  # other errors retried with back-off (and a full resync)
        self._stop = threading.Event()
        self._resp: Any = None  # the open watch response, shut down by stop()

    # -- what subclasses provide ----------------------------------------------------------------------
    def resync(self) -> None:
        """List everything, replace the cache, set `resource_version` and `synced`."""
        raise NotImplementedError

    def open_watch(self, **kwargs: Any) -> Any:
        """The watch request (the client's list call with these arguments)."""
        raise NotImplementedError

    def on_event(self, event_type: str, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- the loop (worker thread) ---------------------------------------------------------------------
    def watch_once(self) -> None:
        """One watch request, until the server ends it, the read times out, or we are stopped."""
        kwargs: dict[str, Any] = {
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
            resp = self.open_watch(**kwargs)
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
                if etype in ("ADDED", "MODIFIED", "DELETED"):
                    self.on_event(etype, obj)
        finally:
            self._resp = None
            resp.close()
            resp.release_conn()

    def run(self) -> None:
        """Blocking loop (a worker thread); returns after `stop_stream()`."""
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
                log.info("%s expired (410); listing again", self.what, extra={"reason": str(exc)})
                self.resource_version = None
                need_list = True
            except Exception as exc:
                if self._stop.is_set():
                    return
                if is_read_timeout(exc):
                    continue  # an idle stream: watch again from the same resourceVersion
                if is_disconnect(exc) and not need_list:
                    # The stream was cut (proxy idle timeout, API server restart, network): watch again
                    # from the last resourceVersion; the events since then are replayed or a 410 says
                    # they are gone and we list. A failing reconnect lands below, with back-off.
                    self.disconnects += 1
                    log.info("%s disconnected; watching again", self.what, extra={"error": repr(exc)})
                    continue
                self.failures += 1
                log.warning("%s failed (%r); retrying in %.1fs", self.what, exc, backoff)
                need_list = True
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff_s)

    def stop_stream(self) -> None:
        """Ask the loop to end, and unblock its read now instead of after read_timeout_s."""
        self._stop.set()
        self.restart_stream()

    def restart_stream(self) -> None:
        """End the current stream as a network cut would (tests, and a manual nudge)."""
        resp = self._resp
        if resp is not None:
            try:
                resp.shutdown()
            except Exception:  # noqa: S110  # nosec B110 - best effort; the read timeout still ends it
                pass


def is_disconnect(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(
            exc, urllib3.exceptions.ProtocolError | ConnectionResetError | http.client.IncompleteRead
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def is_read_timeout(exc: BaseException | None) -> bool:
    while exc is not None:
        if "ReadTimeout" in type(exc).__name__ or "timed out" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
