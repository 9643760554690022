"""Async client for the runner protocol, used by mcp-api.

    async with RunnerClient(token=token, uds="/run/ws-1.sock") as runner:
        await runner.wait_ready(timeout=10)
        result = await runner.call("files/read", ReadFileRequest(path="README.md"))

`call` returns the validated result model of the operation, or raises `RunnerError` carrying the
runner's error code, message, HTTP status and path. A runner that cannot be reached (not started
yet, crashed, timed out) raises `RunnerUnavailable`, a `RunnerError` with status 503.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel, ValidationError

from agent_runner.observability import context as log_context
from agent_runner.observability.tracing import inject, tracer
from agent_runner.protocol import ALL_OPERATIONS, ErrorCode, ErrorResponse, HealthResult

_tracer = tracer("agent_runner.client")


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
        with _tracer.start_as_current_span(
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
        self, method: str, url: str, *, request_timeout: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        extra: dict[str, Any] = {} if request_timeout is None else {"timeout": request_timeout}
        try:
            return await self._http.request(method, url, **kwargs, **extra)
        except httpx.TimeoutException as exc:
            raise RunnerUnavailable(
                f"runner at {self._where} did not answer {url} in time ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise RunnerUnavailable(
                f"cannot reach runner at {self._where}: {exc or type(exc).__name__}"
            ) from exc

    def _result(self, response: httpx.Response, model: type[BaseModel]) -> BaseModel:
        if response.status_code == 200:
            try:
                return model.model_validate_json(response.content)
            except ValidationError as exc:
                raise RunnerError(
                    ErrorCode.INTERNAL,
                    f"runner answered {response.request.url.path} with a body that is not "
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
