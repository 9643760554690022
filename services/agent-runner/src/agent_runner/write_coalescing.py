"""One socket write per HTTP answer instead of two, for uvicorn's httptools protocol.

uvicorn writes the status line and headers as soon as the app sends `http.response.start`, and the
body with a second `transport.write`: two send syscalls per answer. On loopback TCP and Unix
sockets each send runs the receiver's side of the stack and wakes its reader, so the second write
costs about as much as the first, and the reader (a client, or mcp-api reading its runner) wakes
twice for one answer. `CoalescingTransport` holds what one loop step writes and sends it with one
`write` at the end of that step (`loop.call_soon`): the header block and a body sent right after it
leave together, a streamed body still goes out event by event, one loop step late at most.

It never holds more than `MAX_PENDING_BYTES` (beyond that it writes at once, so flow control still
sees a large body), and `close()` sends what it holds first. `abort()` drops it, like the socket's
own buffer. `AGENT_RUNNER_COALESCE_WRITES=0` turns it off (mcp-api and runners read it at start).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

COALESCE_ENV = "AGENT_RUNNER_COALESCE_WRITES"
MAX_PENDING_BYTES = 64 * 1024


def enabled() -> bool:
    return os.environ.get(COALESCE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class CoalescingTransport:
    """Wraps an asyncio transport; everything but writing and closing goes to the real one."""

    __slots__ = ("_transport", "_loop", "_pending", "_pending_bytes")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))
        self._pending_bytes += len(data)
        if self._pending_bytes > MAX_PENDING_BYTES:
            self._flush()

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        # A peer that went away: the transport would only log a warning per write; uvicorn has
        # already stopped sending once it saw the connection lost.
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._pending_bytes

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing each loop step's output with one send."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if enabled():
            transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        super().connection_made(transport)
