"""The runner's HTTP API: `POST /v1/<op>` for every op in `protocol.OPERATIONS`, `GET /v1/health`.

Requests and answers are the pydantic models of protocol.py. Every route, health included,
needs `Authorization: Bearer <token>`. Errors are always an `ErrorResponse` body with a status
from `errors.HTTP_STATUS`; a 500 means a bug in the runner, never bad input.

File work is blocking (syscalls, fsync, regex), so it runs in worker threads and the event loop
stays free to answer health checks while a long grep runs.
"""

from __future__ import annotations

import gc
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from agent_runner import __version__
from agent_runner import commands as command_ops
from agent_runner.errors import OperationError, status_for
from agent_runner.observability.asgi import RunnerTelemetry
from agent_runner.protocol import (
    COMMAND_OPERATIONS,
    MAX_WRITE_BYTES,
    OPERATIONS,
    ErrorBody,
    ErrorCode,
    ErrorResponse,
    HealthResult,
)
from agent_runner.sandbox.policy import SandboxPolicy
from agent_runner.workspace import files, search
from agent_runner.workspace.paths import Workspace

logger = logging.getLogger(__name__)

GC_FREEZE_ENV = "AGENT_RUNNER_GC_FREEZE"
# A base64 write of MAX_WRITE_BYTES is 4/3 as large, plus JSON framing and escaping slack.
MAX_BODY_BYTES = int(MAX_WRITE_BYTES * 1.4) + 64 * 1024

Handler = Callable[[Workspace, Any], BaseModel]

HANDLERS: dict[str, Handler] = {
    "files/read": files.read_file,
    "files/write": files.write_file,
    "files/edit": files.edit_file,
    "files/list": files.list_directory,
    "files/tree": search.directory_tree,
    "files/find": search.find_files,
    "files/grep": search.grep,
    "files/info": files.file_info,
    "files/mkdir": files.create_directory,
    "files/move": files.move_file,
    "files/delete": files.delete_file,
}


def error_response(
    code: ErrorCode, message: str, path: str | None = None, status: int | None = None
) -> Response:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, path=path))
    return Response(
        body.model_dump_json(exclude_none=True),
        status_code=status if status is not None else status_for(code),
        media_type="application/json",
    )


def _model_response(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


class _RequestError(Exception):
    def __init__(self, code: ErrorCode, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class BearerAuth:
    """ASGI middleware: refuse every request without the runner's bearer token, before routing.

    Checked before routing so an unauthenticated caller learns nothing, not even which routes
    exist. The comparison is constant-time.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            response = error_response(
                ErrorCode.UNAUTHORIZED, "missing or wrong bearer token in the Authorization header"
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                return hmac.compare_digest(credentials.strip(), self._expected)
        return False


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _RequestError(
            ErrorCode.TOO_LARGE, f"request body is {declared} bytes; the limit is {MAX_BODY_BYTES}", 413
        )
    chunks = []
    size = 0
    # Counted while streaming too: a chunked body has no Content-Length to check up front.
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _RequestError(
                ErrorCode.TOO_LARGE, f"request body exceeds the limit of {MAX_BODY_BYTES} bytes", 413
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(op: str, model: type[BaseModel], body: bytes) -> BaseModel:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _RequestError(
            ErrorCode.INVALID_ARGUMENT, f"request body is not valid JSON: {exc}", 400
        ) from None
    if not isinstance(data, dict):
        raise _RequestError(
            ErrorCode.INVALID_ARGUMENT,
            f"request body must be a JSON object with the fields of {model.__name__}, "
            f"not a JSON {type(data).__name__}",
            400,
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _RequestError(ErrorCode.INVALID_ARGUMENT, describe_validation_error(op, exc), 400) from None


def describe_validation_error(op: str, exc: ValidationError) -> str:
    """One line per problem, naming the field: 'path: Field required; offset: ...'."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in err["loc"]) or "body"
        problems.append(f"{location}: {err['msg']}")
    return f"invalid request for {op}: " + "; ".join(problems)


Work = Callable[[Request, BaseModel], Awaitable[BaseModel]]


def _endpoint(op: str, request_model: type[BaseModel], result_model: type[BaseModel], work: Work):
    """One route: parse and validate the body, do the work, and turn every failure into the protocol's
    error body (anything unexpected is a runner bug: 500 `internal`, details only in the log)."""

    async def endpoint(request: Request) -> Response:
        try:
            parsed = _parse(op, request_model, await _read_body(request))
            result = await work(request, parsed)
        except _RequestError as exc:
            return error_response(exc.code, exc.message, status=exc.status)
        except OperationError as exc:
            if exc.code is ErrorCode.INTERNAL:
                logger.error("%s failed: %s", op, exc.message)
            return error_response(exc.code, exc.message, exc.path)
        except ClientDisconnect:
            # The caller gave up (its own timeout); nobody is left to answer.
            return Response(status_code=499)
        except Exception:
            logger.exception("unexpected error in %s", op)
            return error_response(
                ErrorCode.INTERNAL, f"internal error while running {op}; the runner log has the details"
            )
        if not isinstance(result, result_model):  # pragma: no cover - a wiring bug, caught in tests
            raise TypeError(f"{op} returned {type(result).__name__}, expected {result_model.__name__}")
        return _model_response(result)

    endpoint.__name__ = "op_" + op.replace("/", "_")
    return endpoint


def _operation_endpoint(op: str, handler: Handler) -> Callable[[Request], Any]:
    """File operations: blocking work on the workspace fd, run in a worker thread."""

    async def work(request: Request, parsed: BaseModel) -> BaseModel:
        return await anyio.to_thread.run_sync(handler, request.app.state.workspace, parsed)

    async def read(request: Request, parsed: BaseModel) -> BaseModel:
        # A hot, unchanged file is answered from the read cache without a thread hop.
        cached = files.read_file_cached(request.app.state.workspace, parsed)  # type: ignore[arg-type]
        return cached if cached is not None else await work(request, parsed)

    return _endpoint(op, *OPERATIONS[op], read if handler is files.read_file else work)


def _command_endpoint(op: str) -> Callable[[Request], Any]:
    """Command operations: async, owned by the runner's command service."""
    handler = command_ops.HANDLERS[op]

    async def work(request: Request, parsed: BaseModel) -> BaseModel:
        service: command_ops.CommandService | None = request.app.state.commands
        if service is None:
            raise OperationError(
                ErrorCode.SANDBOX_UNAVAILABLE, "this runner was started without a sandbox policy"
            )
        return await handler(service, parsed)

    return _endpoint(op, *COMMAND_OPERATIONS[op], work)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        known = ", ".join(sorted([*OPERATIONS, *COMMAND_OPERATIONS]))
        return error_response(
            ErrorCode.NOT_FOUND, f"no such route {request.url.path}; operations are: {known}", status=404
        )
    if exc.status_code == 405:
        return error_response(
            ErrorCode.INVALID_ARGUMENT,
            f"{request.method} is not allowed on {request.url.path}; operations use POST, health uses GET",
            status=405,
        )
    return error_response(
        ErrorCode.INVALID_ARGUMENT, str(exc.detail), status=exc.status_code
    )  # pragma: no cover


def create_app(
    workspace_dir: str | os.PathLike[str],
    token: str,
    workspace_id: str,
    *,
    resolver: str | None = None,
    sandbox: SandboxPolicy | None = None,
) -> Starlette:
    """The runner app for one workspace. Opens the workspace directory now and keeps it open.

    `resolver` forces "openat2" or "nofollow-walk"; by default openat2 when the kernel has it.
    `sandbox` is the policy commands run under; without one the exec operations are refused.
    """
    if not token:
        raise ValueError("the runner needs a non-empty token")
    workspace = Workspace(workspace_dir, resolver=resolver)

    async def health(request: Request) -> Response:
        return _model_response(
            HealthResult(
                runner_version=__version__,
                workspace_id=workspace_id,
                pid=os.getpid(),
                resolver=workspace.resolver,
            )
        )

    commands = command_ops.CommandService(sandbox) if sandbox is not None else None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The start-up heap out of the cyclic GC's reach: full collections stop rescanning it (~2 ms
        # instead of tens of ms per collection, a latency spike for every call in flight).
        frozen = os.environ.get(GC_FREEZE_ENV, "1") != "0"
        if frozen:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if frozen:
                gc.unfreeze()
            # Jobs die with their runner: nothing a command started outlives it.
            if commands is not None:
                await commands.aclose()
            workspace.close()

    if set(HANDLERS) != set(OPERATIONS):  # pragma: no cover - a wiring bug, caught in tests
        raise RuntimeError(f"handlers and protocol disagree: {set(HANDLERS) ^ set(OPERATIONS)}")
    routes = [Route("/v1/health", health, methods=["GET"])]
    routes += [
        Route(f"/v1/{op}", _operation_endpoint(op, HANDLERS[op]), methods=["POST"]) for op in OPERATIONS
    ]
    routes += [Route(f"/v1/{op}", _command_endpoint(op), methods=["POST"]) for op in COMMAND_OPERATIONS]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    app.state.workspace = workspace
    app.state.commands = commands
    app.add_middleware(BearerAuth, token=token)
    # Outermost: every call, refused ones included, gets a span and a log line joined to the caller's.
    app.add_middleware(RunnerTelemetry)
    return app
