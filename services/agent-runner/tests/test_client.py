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
