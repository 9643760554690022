"""Async client for the runner protocol, used by mcp-api.

    async with RunnerClient(token=token, uds="/run/ws-1.sock") as runner:
        await runner.wait_ready(timeout=10)
        result = await runner.call("files/read", ReadFileRequest(path="README.md"))

`call` returns the validated result model of the operation, or raises `RunnerError` carrying the
runner's error code, message, HTTP status and path. A runner that cannot be reached (not started
yet, crashed, timed out) raises `RunnerUnavailable`, a `RunnerError` with status 503.

Over a Unix socket the client speaks HTTP/1.1 itself (`Http11Pool`: a pool of keep-alive
connections, no per-request pool bookkeeping or socket polling), because mcp-api pays this hop on
every file tool call; over TCP (a runner pod) it uses httpx. `AGENT_RUNNER_CLIENT=httpx` forces
httpx for sockets too (A/B measurements, or if the lean client is ever suspected).
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from typing import Any

import anyio
import httpx
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel, ValidationError

from agent_runner.observability import context as log_context
from agent_runner.observability.tracing import current_span, inject, tracer
from agent_runner.protocol import ALL_OPERATIONS, ErrorCode, ErrorResponse, HealthResult

_tracer = tracer("agent_runner.client")
CLIENT_IMPL_ENV = "AGENT_RUNNER_CLIENT"
# uvicorn (the runner's server) closes a keep-alive connection idle for 5 s; the pool drops its own
# idle connections before that, so a request never races the server's close.
IDLE_CONNECTION_S = 4.0
MAX_IDLE_CONNECTIONS = 64
# Response heads larger than this are not a runner's: refuse rather than buffer without end.
MAX_HEAD_BYTES = 64 * 1024


class RunnerError(Exception):
    """An error answered by (or about) the runner; `code` is the protocol ErrorCode."""

    def __init__(self, code: ErrorCode, message: str, status: int, path: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.path = path

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.code.value!r}, {self.message!r}, "
            f"status={self.status}, path={self.path!r})"
        )


class RunnerUnavailable(RunnerError):
    """The runner could not be reached or did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INTERNAL, message, 503)


class Reply:
    """What `_send` returns: the status, the body and the path asked for (httpx-agnostic)."""

    __slots__ = ("status_code", "content", "path")

    def __init__(self, status_code: int, content: bytes, path: str) -> None:
        self.status_code = status_code
        self.content = content
        self.path = path

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _ConnectionLost(Exception):
    """The connection closed before the first byte of the answer (a reused one may be retried)."""


class Http11Pool:
    """A minimal HTTP/1.1 client over a pool of keep-alive Unix-socket connections.

    Only what the runner protocol needs: one request at a time per connection, `Content-Length`
    bodies (chunked answers are read too), no redirects, no cookies, no proxies. A connection goes
    back to the pool only after a complete answer without `Connection: close`; one that fails or is
    cancelled mid-request is closed, so a late answer can never be read by the next request. A
    request on a reused connection that finds it closed before any answer byte is sent once more on
    a fresh connection (the runner's idle close raced us, so the request never reached it).
    """

    def __init__(self, uds: str, default_headers: bytes) -> None:
        self._uds = uds
        self._default_headers = default_headers
        self._idle: collections.deque[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = (
            collections.deque()
        )
        self._closed = False

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes | None) -> Reply:
        head = [f"{method} {path} HTTP/1.1\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} has a line break")
            head.append(f"{name}: {value}\r\n")
        if body is not None:
            head.append(f"Content-Length: {len(body)}\r\n")
        head.append("\r\n")
        data = "".join(head).encode("latin-1")
        data = data[: len(data) - 2] + self._default_headers + b"\r\n"
        if body:
            data += body
        while True:
            reader, writer, reused = await self._acquire()
            try:
                status, content, keep = await self._exchange(reader, writer, data)
            except _ConnectionLost:
                writer.close()
                if reused:
                    continue
                raise ConnectionResetError("the runner closed the connection without answering") from None
            except BaseException:
                writer.close()
                raise
            if keep and not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append((reader, writer, time.monotonic()))
            else:
                writer.close()
            return Reply(status, content, path)

    async def _acquire(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        if self._closed:
            raise ConnectionError("client is closed")
        now = time.monotonic()
        while self._idle and now - self._idle[0][2] >= IDLE_CONNECTION_S:
            self._idle.popleft()[1].close()  # the oldest: the runner has closed or will close them
        while self._idle:
            reader, writer, since = self._idle.pop()
            if now - since < IDLE_CONNECTION_S and not reader.at_eof() and not writer.is_closing():
                return reader, writer, True
            writer.close()
        reader, writer = await asyncio.open_unix_connection(self._uds, limit=MAX_HEAD_BYTES)
        return reader, writer, False

    @staticmethod
    async def _exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
    ) -> tuple[int, bytes, bool]:
        try:
            writer.write(data)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _ConnectionLost from None
            raise ConnectionResetError("the runner closed the connection mid-answer") from None
        except (BrokenPipeError, ConnectionResetError):
            raise _ConnectionLost from None
        except asyncio.LimitOverrunError:
            raise ConnectionError("the runner's answer head is too large") from None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ConnectionError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        keep = parts[0] == "HTTP/1.1"
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                continue
            name = name.strip().lower()
            value = value.strip()
            if name == "content-length":
                if not value.isdigit():
                    raise ConnectionError(f"bad Content-Length {value[:20]!r}")
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                keep = keep and value.lower() != "close"
        try:
            if chunked:
                chunks = []
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")  # trailers are not used: the empty line
                        break
                    chunks.append(await reader.readexactly(size))
                    await reader.readexactly(2)
                content = b"".join(chunks)
            elif length is not None:
                content = await reader.readexactly(length) if length else b""
            elif status in (204, 304) or 100 <= status < 200:
                content = b""
            else:
                content = await reader.read()
                keep = False
        except (asyncio.IncompleteReadError, ValueError):
            raise ConnectionResetError("the runner closed the connection mid-answer") from None
        return status, content, keep

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            _, writer, _ = self._idle.pop()
            writer.close()


class RunnerClient:
    """One connection pool to one runner, over a Unix socket (`uds`) or TCP (`base_url`)."""

    def __init__(
        self,
        *,
        token: str,
        uds: str | None = None,
        base_url: str = "http://runner",
        timeout: float = 60.0,
    ) -> None:
        self._where = f"unix socket {uds}" if uds else base_url
        self._timeout = timeout
        self._pool: Http11Pool | None = None
        if uds and os.environ.get(CLIENT_IMPL_ENV, "").lower() != "httpx":
            self._pool = Http11Pool(uds, f"Host: runner\r\nAuthorization: Bearer {token}\r\n".encode("latin-1"))
        transport = httpx.AsyncHTTPTransport(uds=uds) if uds else None
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
            # Never pick up proxy settings from the environment for a local socket or pod IP.
            trust_env=False,
        )

    async def __aenter__(self) -> RunnerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        await self._http.aclose()

    async def health(self) -> HealthResult:
        response = await self._send("GET", "/v1/health")
        return self._result(response, HealthResult)  # type: ignore[return-value]

    async def call(
        self, op: str, request: BaseModel | dict[str, Any], *, request_timeout: float | None = None
    ) -> BaseModel:
        """Run one operation; returns an instance of the op's result model.

        `request` is the op's request model (a dict is validated into it). `request_timeout` overrides
        the client's default for this call (a grep may need longer than a read).
        """
        try:
            request_model, result_model = ALL_OPERATIONS[op]
        except KeyError:
            raise ValueError(f"unknown runner operation {op!r}; known: {', '.join(ALL_OPERATIONS)}") from None
        if isinstance(request, dict):
            request = request_model.model_validate(request)
        elif not isinstance(request, request_model):
            raise TypeError(f"{op} takes a {request_model.__name__}, got {type(request).__name__}")
        # A CLIENT span per operation; its traceparent (and the log context) travel in the headers.
        with current_span(
            _tracer,
            f"runner {op}",
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "secure-agent-runner", "rpc.method": op},
        ) as span:
            headers = {"Content-Type": "application/json", **log_context.outgoing_headers()}
            response = await self._send(
                "POST",
                f"/v1/{op}",
                content=request.model_dump_json(),
                headers=inject(headers),
                request_timeout=request_timeout,
            )
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(StatusCode.ERROR)
            return self._result(response, result_model)

    async def wait_ready(self, timeout: float = 10.0, interval: float = 0.05) -> HealthResult:  # noqa: ASYNC109
        """Poll health until the runner answers; RunnerUnavailable after `timeout` seconds.

        An authentication failure is raised at once: retrying cannot fix a wrong token.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await self.health()
            except RunnerUnavailable as exc:
                if time.monotonic() + interval > deadline:
                    raise RunnerUnavailable(
                        f"runner at {self._where} not ready after {timeout:g} s: {exc.message}"
                    ) from exc
            await anyio.sleep(interval)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        request_timeout: float | None = None,
        content: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        if self._pool is not None:
            return await self._send_lean(method, url, request_timeout, content, headers)
        extra: dict[str, Any] = {} if request_timeout is None else {"timeout": request_timeout}
        try:
            response = await self._http.request(method, url, content=content, headers=headers, **extra)
            return Reply(response.status_code, response.content, url)
        except httpx.TimeoutException as exc:
            raise RunnerUnavailable(
                f"runner at {self._where} did not answer {url} in time ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise RunnerUnavailable(
                f"cannot reach runner at {self._where}: {exc or type(exc).__name__}"
            ) from exc

    async def _send_lean(
        self,
        method: str,
        url: str,
        request_timeout: float | None,
        content: str | None,
        headers: dict[str, str] | None,
    ) -> Reply:
        assert self._pool is not None
        limit = self._timeout if request_timeout is None else request_timeout
        body = content.encode() if content is not None else None
        try:
            async with asyncio.timeout(limit):
                return await self._pool.request(method, url, headers or {}, body)
        except TimeoutError as exc:
            raise RunnerUnavailable(
                f"runner at {self._where} did not answer {url} in time (timeout after {limit:g} s)"
            ) from exc
        except OSError as exc:
            raise RunnerUnavailable(
                f"cannot reach runner at {self._where}: {exc or type(exc).__name__}"
            ) from exc

    def _result(self, response: Reply, model: type[BaseModel]) -> BaseModel:
        if response.status_code == 200:
            try:
                return model.model_validate_json(response.content)
            except ValidationError as exc:
                raise RunnerError(
                    ErrorCode.INTERNAL,
                    f"runner answered {response.path} with a body that is not "
                    f"a {model.__name__}: {exc}",
                    502,
                ) from None
        try:
            error = ErrorResponse.model_validate_json(response.content).error
        except ValidationError:
            snippet = response.text[:200]
            raise RunnerError(
                ErrorCode.INTERNAL,
                f"runner answered HTTP {response.status_code} without an error body: {snippet!r}",
                response.status_code,
            ) from None
        raise RunnerError(error.code, error.message, response.status_code, error.path)
