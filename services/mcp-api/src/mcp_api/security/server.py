"""Server-side protections against slow and greedy clients, for `secure-agent serve` and gunicorn.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) and concurrent connections
(`limit_concurrency`), but not how long a client may take to send its request headers, nor (with
httptools) how large they may grow. `GuardedHttpToolsProtocol` adds both: a connection that has
not completed its headers within `header_timeout_s` gets 408 and is closed (slowloris), and
headers beyond `max_header_bytes` get 431 and the connection is closed before they are stored.
Bodies are bounded in size and arrival time by `security.limits.BodyLimits`. Each answer leaves
with one socket write (agent_runner.write_coalescing).

X-Forwarded-* handling is switched off in uvicorn (`proxy_headers=False`): the app believes those
headers only from `SECURE_AGENT_TRUSTED_PROXIES` (security/net.py), whichever server runs it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agent_runner.write_coalescing import CoalescingHttpToolsProtocol

from .config import RequestLimitSettings

_REFUSALS = {
    408: b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 36\r\nconnection: close\r\n\r\n"
    b"request headers did not arrive in time",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\ncontent-length: 25\r\n"
    b"connection: close\r\n\r\nrequest headers too large",
}


class _HeadersTooLarge(Exception):
    pass


class GuardedHttpToolsProtocol(CoalescingHttpToolsProtocol):
    header_timeout_s: float = 10.0
    max_header_bytes: int = 16 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._refused: int | None = None
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        self._refuse(408)

    def _refuse(self, status: int) -> None:
        if self._refused is None and not self.transport.is_closing():
            self._refused = status
            self.transport.write(_REFUSALS[status])
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused is not None:
            return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if self._refused is not None:
            return  # the parser stopped because we refused the request; the answer is already sent
        super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            self._disarm()
            self._refuse(431)
            raise _HeadersTooLarge  # stops the parser; data_received turns it into send_400_response

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()


def guarded_protocol(limits: RequestLimitSettings) -> type[GuardedHttpToolsProtocol]:
    # Request line + headers: allow the configured header budget plus a long URL.
    return type(
        "SecureAgentHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout_s": limits.header_timeout_s, "max_header_bytes": limits.max_header_bytes + 8192},
    )


def uvicorn_options(limits: RequestLimitSettings) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run / uvicorn.Config."""
    return {
        "http": guarded_protocol(limits),
        "proxy_headers": False,
        "server_header": False,
        "date_header": True,
        "timeout_keep_alive": limits.keep_alive_timeout_s,
        "limit_concurrency": limits.max_connections,
        "h11_max_incomplete_event_size": limits.max_header_bytes + 8192,
    }


try:  # gunicorn's worker, for services/mcp-api/gunicorn.conf.py
    from uvicorn_worker import UvicornWorker

    class SecureUvicornWorker(UvicornWorker):
        """UvicornWorker with the protections above (settings from SECURE_AGENT_* like the app)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            from ..settings import Settings

            options = uvicorn_options(Settings().limits)
            options.pop("timeout_keep_alive")  # gunicorn's `keepalive` setting owns it
            self.CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, **options}
            super().__init__(*args, **kwargs)

except ImportError:  # pragma: no cover - uvicorn-worker is a dependency; keep the module importable anyway
    pass
