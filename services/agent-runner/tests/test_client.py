"""RunnerClient against a real runner process on a Unix socket, plus odd answers via MockTransport."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from agent_runner.client import RunnerClient, RunnerError, RunnerUnavailable
from agent_runner.protocol import (
    ErrorCode,
    FileInfoRequest,
    GrepRequest,
    GrepResult,
    ReadFileRequest,
    ReadFileResult,
    WriteFileRequest,
    WriteFileResult,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def runner(start_runner, root: Path):  # noqa: ANN001, ANN201
    return start_runner(root)


async def test_call_and_health_over_uds(runner, root: Path) -> None:  # noqa: ANN001
    async with RunnerClient(token=runner.token, uds=runner.uds) as client:
        health = await client.wait_ready(timeout=10)
        assert health.workspace_id == "ws-test" and health.pid == runner.proc.pid
        written = await client.call("files/write", WriteFileRequest(path="hello.txt", content="hi\n"))
        assert isinstance(written, WriteFileResult) and written.created
        read = await client.call("files/read", {"path": "hello.txt"})
        assert isinstance(read, ReadFileResult) and read.content == "hi\n"
        grep = await client.call("files/grep", GrepRequest(pattern="hi"), request_timeout=30)
        assert isinstance(grep, GrepResult) and grep.matches[0].path == "hello.txt"
    assert (root / "hello.txt").read_text() == "hi\n"


async def test_runner_errors_are_raised_with_code_status_and_path(runner, root: Path, outside: Path) -> None:  # noqa: ANN001
    (root / "link").symlink_to(outside / "secret.txt")
    async with RunnerClient(token=runner.token, uds=runner.uds) as client:
        with pytest.raises(RunnerError) as excinfo:
            await client.call("files/read", ReadFileRequest(path="missing.txt"))
        err = excinfo.value
        assert (err.code, err.status, err.path) == (ErrorCode.NOT_FOUND, 404, "missing.txt")
        assert str(err) == "not_found: 'missing.txt' does not exist"
        assert "RunnerError('not_found'" in repr(err)
        with pytest.raises(RunnerError) as excinfo:
            await client.call("files/read", ReadFileRequest(path="link"))
        assert excinfo.value.code is ErrorCode.SYMLINK and "SECRET" not in excinfo.value.message


async def test_wrong_token(runner) -> None:  # noqa: ANN001
    async with RunnerClient(token="wrong-token-000000000000", uds=runner.uds) as client:
        with pytest.raises(RunnerError) as excinfo:
            await client.wait_ready(timeout=5)
        assert not isinstance(excinfo.value, RunnerUnavailable)
        assert (excinfo.value.code, excinfo.value.status) == (ErrorCode.UNAUTHORIZED, 401)


async def test_call_argument_checks(runner) -> None:  # noqa: ANN001
    async with RunnerClient(token=runner.token, uds=runner.uds) as client:
        with pytest.raises(ValueError, match="unknown runner operation 'files/nope'"):
            await client.call("files/nope", ReadFileRequest(path="x"))
        with pytest.raises(TypeError, match="files/read takes a ReadFileRequest, got FileInfoRequest"):
            await client.call("files/read", FileInfoRequest(path="x"))


async def test_unavailable_runner(short_tmp: Path) -> None:
    async with RunnerClient(token="t" * 20, uds=str(short_tmp / "absent.sock")) as client:
        with pytest.raises(RunnerUnavailable) as excinfo:
            await client.health()
        assert (excinfo.value.code, excinfo.value.status) == (ErrorCode.INTERNAL, 503)
        assert "cannot reach runner at unix socket" in excinfo.value.message
        with pytest.raises(RunnerUnavailable) as excinfo:
            await client.wait_ready(timeout=0.3, interval=0.05)
        assert "not ready after 0.3 s" in excinfo.value.message


async def test_wait_ready_polls_until_up(start_runner, root: Path) -> None:  # noqa: ANN001
    runner = start_runner(root, wait=False)
    async with RunnerClient(token=runner.token, uds=runner.uds) as client:
        health = await client.wait_ready(timeout=15)
        assert health.status == "ok"


def _mock_client(handler) -> RunnerClient:  # noqa: ANN001
    client = RunnerClient(token="t" * 20, base_url="http://runner")
    client._http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://runner")
    return client


async def test_timeout_becomes_unavailable() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with _mock_client(slow) as client:
        with pytest.raises(RunnerUnavailable) as excinfo:
            await client.call("files/read", ReadFileRequest(path="x"))
        assert "did not answer /v1/files/read in time (ReadTimeout)" in excinfo.value.message


async def test_non_protocol_answers() -> None:
    def proxy_error(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    async with _mock_client(proxy_error) as client:
        with pytest.raises(RunnerError) as excinfo:
            await client.health()
        assert excinfo.value.status == 502 and excinfo.value.code is ErrorCode.INTERNAL
        assert "without an error body" in excinfo.value.message and "Bad Gateway" in excinfo.value.message

    def wrong_shape(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"unexpected": True})

    async with _mock_client(wrong_shape) as client:
        with pytest.raises(RunnerError) as excinfo:
            await client.call("files/read", ReadFileRequest(path="x"))
        assert excinfo.value.status == 502 and "not a ReadFileResult" in excinfo.value.message


async def test_tcp_base_url() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={"runner_version": "1", "workspace_id": "w", "pid": 1, "resolver": "openat2"},
        )

    client = RunnerClient(token="secret-token-1234567890", base_url="http://10.0.0.5:8080")
    client._http = httpx.AsyncClient(
        transport=httpx.MockTransport(record), base_url="http://10.0.0.5:8080", headers=client._http.headers
    )
    async with client:
        assert (await client.health()).workspace_id == "w"
    assert str(seen[0].url) == "http://10.0.0.5:8080/v1/health"
    assert seen[0].headers["authorization"] == "Bearer secret-token-1234567890"


# --- the lean HTTP/1.1 pool used over Unix sockets -------------------------------------------


class _FakeRunner:
    """A scripted HTTP/1.1 server on a Unix socket: counts connections, answers from `answers`."""

    def __init__(self, path: Path, answers: list[bytes | None]) -> None:
        self.path = path
        self.answers = answers
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader, writer) -> None:  # noqa: ANN001
        import asyncio

        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                answer = self.answers.pop(0) if self.answers else None
                if answer is None:  # hang up without answering
                    writer.close()
                    return
                if answer == b"sleep":
                    await asyncio.sleep(30)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


_HEALTH = b'{"runner_version": "1", "workspace_id": "w", "pid": 1, "resolver": "openat2"}'


def _ok(body: bytes = _HEALTH, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body), extra, body,
    )  # fmt: skip


async def _serve(short_tmp: Path, answers: list[bytes | None]):  # noqa: ANN202
    import asyncio

    fake = _FakeRunner(short_tmp / "fake.sock", answers)
    server = await asyncio.start_unix_server(fake.handle, path=str(fake.path))
    return fake, server


async def test_lean_client_reuses_one_connection_and_sends_the_token(short_tmp: Path) -> None:
    fake, server = await _serve(short_tmp, [_ok(), _ok(), _ok()])
    async with server, RunnerClient(token="secret-token-1234567890", uds=str(fake.path)) as client:
        assert client._pool is not None
        for _ in range(3):
            assert (await client.health()).workspace_id == "w"
    assert fake.connections == 1 and len(fake.requests) == 3
    assert b"Authorization: Bearer secret-token-1234567890\r\n" in fake.requests[0]
    assert fake.requests[0].startswith(b"GET /v1/health HTTP/1.1\r\n")


async def test_lean_client_retries_once_when_a_reused_connection_was_closed(short_tmp: Path) -> None:
    # The first connection answers once, then hangs up on the next request without answering (the
    # server's idle close racing us): the request goes again on a fresh connection.
    fake, server = await _serve(short_tmp, [_ok(), None, _ok()])
    async with server, RunnerClient(token="t" * 20, uds=str(fake.path)) as client:
        await client.health()
        assert (await client.health()).workspace_id == "w"
    assert fake.connections == 2


async def test_lean_client_fresh_connection_closed_is_unavailable_and_close_header_honoured(short_tmp: Path) -> None:
    fake, server = await _serve(short_tmp, [_ok(extra=b"connection: close\r\n"), None])
    async with server, RunnerClient(token="t" * 20, uds=str(fake.path)) as client:
        await client.health()  # answered with Connection: close: not pooled
        assert not client._pool._idle
        with pytest.raises(RunnerUnavailable, match="closed the connection without answering"):
            await client.health()
    assert fake.connections == 2


async def test_lean_client_timeout_and_cancellation_drop_the_connection(short_tmp: Path) -> None:
    import asyncio

    fake, server = await _serve(short_tmp, [b"sleep", _ok(), b"sleep", _ok()])
    async with server, RunnerClient(token="t" * 20, uds=str(fake.path), timeout=0.3) as client:
        with pytest.raises(RunnerUnavailable, match=r"did not answer /v1/health in time"):
            await client.health()
        assert not client._pool._idle  # never reused: a late answer must not reach the next caller
        assert (await client.health()).workspace_id == "w"
        task = asyncio.ensure_future(client.call("files/read", ReadFileRequest(path="x"), request_timeout=10))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not client._pool._idle  # the cancelled request's connection was closed, not pooled
        assert (await client.health()).workspace_id == "w"  # on a third, fresh connection
    assert fake.connections == 3


async def test_lean_client_reads_chunked_and_error_answers(short_tmp: Path) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (10, _HEALTH[:10]) + b"%x\r\n%s\r\n" % (len(_HEALTH) - 10, _HEALTH[10:]) + b"0\r\n\r\n"
    )
    error = b'{"error": {"code": "not_found", "message": "\'x\' does not exist", "path": "x"}}'
    fake, server = await _serve(short_tmp, [chunked, b"HTTP/1.1 404 Not Found\r\ncontent-length: %d\r\n\r\n%s" % (len(error), error)])
    async with server, RunnerClient(token="t" * 20, uds=str(fake.path)) as client:
        assert (await client.health()).workspace_id == "w"
        with pytest.raises(RunnerError) as excinfo:
            await client.call("files/read", ReadFileRequest(path="x"))
        assert (excinfo.value.code, excinfo.value.status, excinfo.value.path) == (ErrorCode.NOT_FOUND, 404, "x")
    assert fake.connections == 1


async def test_httpx_can_be_forced_for_sockets(runner, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("AGENT_RUNNER_CLIENT", "httpx")
    async with RunnerClient(token=runner.token, uds=runner.uds) as client:
        assert client._pool is None
        assert (await client.wait_ready(timeout=10)).status == "ok"
