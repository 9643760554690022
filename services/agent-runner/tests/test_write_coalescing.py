"""One socket write per answer: the transport wrapper alone, then a real uvicorn server."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import uvicorn
from agent_runner import write_coalescing as wc
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.buffered = 7

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


async def _next_step() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_writes_of_one_step_leave_together() -> None:
    real = FakeTransport()
    t = wc.CoalescingTransport(real, asyncio.get_running_loop())
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    t.write(bytearray(b"body"))
    t.write(b"")
    assert real.writes == []
    assert t.get_write_buffer_size() == 7 + len(b"HTTP/1.1 200 OK\r\n\r\nbody")
    await _next_step()
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    t.writelines([b"a", b"b"])
    await _next_step()
    assert real.writes[1:] == [b"ab"]


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    real = FakeTransport()
    t = wc.CoalescingTransport(real, asyncio.get_running_loop())
    t.write(b"last words")
    t.close()
    assert real.writes == [b"last words"] and real.closed
    await _next_step()  # the scheduled flush finds nothing left to send
    assert real.writes == [b"last words"]

    real = FakeTransport()
    t = wc.CoalescingTransport(real, asyncio.get_running_loop())
    t.write(b"never sent")
    t.abort()
    await _next_step()
    assert real.writes == [] and real.aborted


async def test_large_bodies_are_not_held() -> None:
    real = FakeTransport()
    t = wc.CoalescingTransport(real, asyncio.get_running_loop())
    t.write(b"h" * 100)
    t.write(b"x" * wc.MAX_PENDING_BYTES)
    assert real.writes == [b"h" * 100 + b"x" * wc.MAX_PENDING_BYTES]
    assert t.get_write_buffer_size() == real.buffered


async def test_nothing_is_written_to_a_closed_peer_and_other_calls_pass_through() -> None:
    real = FakeTransport()
    t = wc.CoalescingTransport(real, asyncio.get_running_loop())
    t.write(b"late")
    real.closed = True  # the peer went away before the loop step ended
    await _next_step()
    assert real.writes == []
    assert t.get_extra_info("peername") == ("127.0.0.1", 1)
    assert t.is_closing()


@pytest.mark.parametrize(("value", "on"), [(None, True), ("1", True), ("0", False), ("off", False), ("false", False)])
def test_switch(monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool) -> None:
    if value is None:
        monkeypatch.delenv(wc.COALESCE_ENV, raising=False)
    else:
        monkeypatch.setenv(wc.COALESCE_ENV, value)
    assert wc.enabled() is on


# --- a real uvicorn server ------------------------------------------------------------------


async def _json(request: Any) -> JSONResponse:
    return JSONResponse({"echo": (await request.body()).decode()})


async def _stream(request: Any) -> StreamingResponse:
    async def events():
        yield b"data: one\n\n"
        await asyncio.sleep(0.3)
        yield b"data: two\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


class _Counting(wc.CoalescingHttpToolsProtocol):
    writes: list[bytes] = []

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        original = transport.write

        def counted(data: bytes) -> None:
            _Counting.writes.append(bytes(data))
            original(data)

        transport.write = counted  # type: ignore[method-assign]
        super().connection_made(transport)


@pytest.fixture
async def server():
    _Counting.writes = []
    app = Starlette(routes=[Route("/json", _json, methods=["POST"]), Route("/stream", _stream)])
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=_Counting, log_level="warning", lifespan="off", access_log=False)
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    for _ in range(1000):  # uvicorn has no "started" event to await
        if srv.started:
            break
        await asyncio.sleep(0.01)
    yield sock.getsockname()[1]
    srv.should_exit = True
    await task


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head + await reader.readexactly(length)


async def test_each_keep_alive_answer_is_one_socket_write(server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    for i in range(3):
        body = f"call {i}".encode()
        writer.write(b"POST /json HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        answer = await _read_answer(reader)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"echo":"call %d"}' % i)
    writer.close()
    assert len(_Counting.writes) == 3
    assert all(w.startswith(b"HTTP/1.1 200") and b'{"echo":' in w for w in _Counting.writes)


async def test_switched_off_the_server_writes_head_and_body_apart(server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(wc.COALESCE_ENV, "0")
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"POST /json HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi")
    assert (await _read_answer(reader)).endswith(b'{"echo":"hi"}')
    writer.close()
    assert len(_Counting.writes) == 2  # what the wrapper saves: uvicorn's head, then its body


async def test_a_stream_is_not_held_back(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = await asyncio.wait_for(reader.readuntil(b"one\n\n"), 5)
    assert b"data: one" in first and loop.time() - started < 0.25  # before the second event exists
    assert b"data: two" in await asyncio.wait_for(reader.readuntil(b"two\n\n"), 5)
    writer.close()
