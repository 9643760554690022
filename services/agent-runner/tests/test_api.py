"""The runner HTTP API: auth, routing, body handling, error mapping (through the ASGI app)."""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from agent_runner import __version__, api
from agent_runner.errors import OperationError
from agent_runner.protocol import MAX_WRITE_BYTES, OPERATIONS, ErrorCode, ErrorResponse, HealthResult

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(root: Path, resolver: str) -> AsyncIterator[httpx.AsyncClient]:
    app = api.create_app(root, TOKEN, "ws-1", resolver=resolver)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://runner", headers=AUTH) as http:
        yield http
    app.state.workspace.close()


def error_of(response: httpx.Response) -> tuple[int, ErrorCode, str]:
    body = ErrorResponse.model_validate_json(response.content)
    return response.status_code, body.error.code, body.error.message


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer "},
    ],
)
async def test_auth_required_everywhere(root: Path, headers: dict[str, str]) -> None:
    app = api.create_app(root, TOKEN, "ws-1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://runner") as http:
        for method, url in [("GET", "/v1/health"), ("POST", "/v1/files/read"), ("GET", "/nope")]:
            response = await http.request(method, url, headers=headers, json={"path": "x"})
            status, code, message = error_of(response)
            assert (status, code) == (401, ErrorCode.UNAUTHORIZED)
            assert "bearer token" in message
            assert response.headers["www-authenticate"] == "Bearer"


async def test_bearer_scheme_is_case_insensitive(root: Path) -> None:
    app = api.create_app(root, TOKEN, "ws-1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://runner") as http:
        response = await http.get("/v1/health", headers={"Authorization": f"bearer {TOKEN}"})
        assert response.status_code == 200


def test_empty_token_refused(root: Path) -> None:
    with pytest.raises(ValueError, match="non-empty token"):
        api.create_app(root, "", "ws-1")


# --- health and routing ---------------------------------------------------------------------


async def test_health(client: httpx.AsyncClient, resolver: str) -> None:
    response = await client.get("/v1/health")
    assert response.status_code == 200
    health = HealthResult.model_validate_json(response.content)
    assert health.workspace_id == "ws-1" and health.pid == os.getpid()
    assert health.resolver == resolver and health.runner_version == __version__
    assert health.protocol_version == "1"


def test_every_protocol_operation_has_a_handler() -> None:
    assert set(api.HANDLERS) == set(OPERATIONS)


async def test_every_operation_is_routed(client: httpx.AsyncClient) -> None:
    for op in OPERATIONS:
        response = await client.post(f"/v1/{op}", json={})
        # Either it ran with defaults or it complained about missing fields: never 404/405.
        assert response.status_code in (200, 400), (op, response.text)


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    status, code, message = error_of(await client.post("/v1/files/teleport", json={}))
    assert (status, code) == (404, ErrorCode.NOT_FOUND) and "files/read" in message
    status, code, message = error_of(await client.get("/v1/files/read"))
    assert (status, code) == (405, ErrorCode.INVALID_ARGUMENT) and "use POST" in message


# --- request bodies -------------------------------------------------------------------------


async def test_body_must_be_a_json_object(client: httpx.AsyncClient) -> None:
    for content in [b"not json", b"[1, 2]", b'"path"', b"\xff\xfe", b""]:
        status, code, message = error_of(await client.post("/v1/files/read", content=content))
        assert (status, code) == (400, ErrorCode.INVALID_ARGUMENT), content
    _, _, message = error_of(await client.post("/v1/files/read", content=b"[1]"))
    assert "must be a JSON object with the fields of ReadFileRequest, not a JSON list" in message


async def test_validation_errors_name_the_fields(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/files/read", json={"offset": -1, "extra": 1})
    status, code, message = error_of(response)
    assert (status, code) == (400, ErrorCode.INVALID_ARGUMENT)
    assert message.startswith("invalid request for files/read: ")
    assert "path: Field required" in message
    assert "offset: Input should be greater than or equal to 0" in message
    assert "extra: Extra inputs are not permitted" in message
    _, _, nested = error_of(
        await client.post("/v1/files/edit", json={"path": "a", "edits": [{"old_text": ""}]})
    )
    assert "edits.0.old_text" in nested and "edits.0.new_text: Field required" in nested


async def test_body_size_limit(client: httpx.AsyncClient) -> None:
    big = b"x" * (api.MAX_BODY_BYTES + 1)
    status, code, message = error_of(await client.post("/v1/files/write", content=big))
    assert (status, code) == (413, ErrorCode.TOO_LARGE) and str(api.MAX_BODY_BYTES) in message

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(api.MAX_BODY_BYTES // (1024 * 1024) + 2):
            yield b"x" * (1024 * 1024)

    status, code, _ = error_of(await client.post("/v1/files/write", content=chunks()))
    assert (status, code) == (413, ErrorCode.TOO_LARGE)


async def test_largest_base64_write_fits_the_body_limit(client: httpx.AsyncClient, root: Path) -> None:
    content = base64.b64encode(b"\x01" * MAX_WRITE_BYTES).decode()
    response = await client.post(
        "/v1/files/write", json={"path": "max.bin", "content": content, "encoding": "base64"}
    )
    assert response.status_code == 200, response.text[:200]
    assert (root / "max.bin").stat().st_size == MAX_WRITE_BYTES


async def test_lone_surrogates_in_json_are_refused_not_crashing(client: httpx.AsyncClient) -> None:
    body = b'{"path": "bad\\ud800name"}'
    status, code, _ = error_of(await client.post("/v1/files/read", content=body))
    assert (status, code) == (400, ErrorCode.INVALID_PATH)
    body = b'{"path": "f.txt", "content": "\\udc80"}'
    status, code, _ = error_of(await client.post("/v1/files/write", content=body))
    assert (status, code) == (400, ErrorCode.INVALID_ARGUMENT)


# --- operations and error mapping -----------------------------------------------------------


async def test_round_trip_of_operations(client: httpx.AsyncClient, root: Path) -> None:
    async def ok(op: str, body: dict) -> dict:
        response = await client.post(f"/v1/{op}", json=body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        return response.json()

    assert (await ok("files/write", {"path": "a/b.txt", "content": "one\ntwo\n"}))["created"] is True
    assert (await ok("files/read", {"path": "a/b.txt"}))["content"] == "one\ntwo\n"
    edit = await ok("files/edit", {"path": "a/b.txt", "edits": [{"old_text": "two", "new_text": "2"}]})
    assert edit["applied"] and "+2" in edit["diff"]
    assert [e["name"] for e in (await ok("files/list", {"path": "a"}))["entries"]] == ["b.txt"]
    assert (await ok("files/tree", {}))["entries"] == 2
    assert (await ok("files/find", {"pattern": "*.txt"}))["matches"] == ["a/b.txt"]
    assert (await ok("files/grep", {"pattern": "one"}))["matches"][0]["line"] == 1
    assert (await ok("files/info", {"path": "a/b.txt"}))["type"] == "file"
    assert (await ok("files/mkdir", {"path": "c"}))["created"] is True
    assert (await ok("files/move", {"source": "a/b.txt", "destination": "c/b.txt"}))[
        "destination"
    ] == "c/b.txt"
    assert (await ok("files/delete", {"path": "c", "recursive": True}))["deleted"] == 2
    assert sorted(os.listdir(root)) == ["a"]


@pytest.mark.parametrize(
    ("op", "body", "status", "code"),
    [
        ("files/read", {"path": "missing"}, 404, ErrorCode.NOT_FOUND),
        ("files/read", {"path": "../etc/passwd"}, 400, ErrorCode.INVALID_PATH),
        ("files/read", {"path": "link"}, 400, ErrorCode.SYMLINK),
        (
            "files/write",
            {"path": "exists.txt", "content": "x", "overwrite": False},
            409,
            ErrorCode.ALREADY_EXISTS,
        ),
        ("files/delete", {"path": "full"}, 409, ErrorCode.DIRECTORY_NOT_EMPTY),
        ("files/write", {"path": "x", "content": "x" * (MAX_WRITE_BYTES + 1)}, 413, ErrorCode.TOO_LARGE),
        (
            "files/edit",
            {"path": "exists.txt", "edits": [{"old_text": "zz", "new_text": ""}]},
            400,
            ErrorCode.NO_MATCH,
        ),
        ("files/grep", {"pattern": "("}, 400, ErrorCode.INVALID_ARGUMENT),
    ],
)
async def test_error_statuses(
    client: httpx.AsyncClient, root: Path, outside: Path, op: str, body: dict, status: int, code: ErrorCode
) -> None:
    (root / "exists.txt").write_text("content")
    (root / "full").mkdir()
    (root / "full" / "f").write_text("x")
    (root / "link").symlink_to(outside / "secret.txt")
    response = await client.post(f"/v1/{op}", json=body)
    got_status, got_code, message = error_of(response)
    assert (got_status, got_code) == (status, code), message
    assert "SECRET" not in response.text


async def test_error_body_carries_path(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/files/read", json={"path": "missing.txt"})
    assert response.json() == {
        "error": {"code": "not_found", "message": "'missing.txt' does not exist", "path": "missing.txt"}
    }


async def test_unexpected_exception_is_500_and_logged(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(workspace, request):  # noqa: ANN001, ANN202
        raise RuntimeError("bug")

    monkeypatch.setitem(api.HANDLERS, "files/info", boom)
    app = api.create_app(client._transport.app.state.workspace.root_path, TOKEN, "ws-1")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://r", headers=AUTH
    ) as http:
        with caplog.at_level(logging.ERROR, logger="agent_runner.api"):
            response = await http.post("/v1/files/info", json={"path": "."})
    status, code, message = error_of(response)
    assert (status, code) == (500, ErrorCode.INTERNAL)
    assert "bug" not in message and "runner log" in message
    assert "unexpected error in files/info" in caplog.text


async def test_internal_operation_error_is_logged(
    root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def io_error(workspace, request):  # noqa: ANN001, ANN202
        raise OperationError(ErrorCode.INTERNAL, "operation on 'x' failed: Input/output error", "x")

    monkeypatch.setitem(api.HANDLERS, "files/info", io_error)
    app = api.create_app(root, TOKEN, "ws-1")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://r", headers=AUTH
    ) as http:
        with caplog.at_level(logging.ERROR, logger="agent_runner.api"):
            response = await http.post("/v1/files/info", json={"path": "x"})
    assert error_of(response)[:2] == (500, ErrorCode.INTERNAL)
    assert "Input/output error" in caplog.text


async def test_client_disconnect_is_quiet(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = api.create_app(root, TOKEN, "ws-1")
    sent: list[dict] = []
    messages = iter(
        [{"type": "http.request", "body": b'{"pa', "more_body": True}, {"type": "http.disconnect"}]
    )

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/files/read",
        "raw_path": b"/v1/files/read",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {TOKEN}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("runner", 80),
        "app": app,
    }
    with caplog.at_level(logging.ERROR):
        await app(scope, receive, send)
    assert sent[0]["status"] == 499
    assert "unexpected" not in caplog.text


async def test_lifespan_closes_workspace(root: Path) -> None:
    app = api.create_app(root, TOKEN, "ws-1")
    workspace = app.state.workspace
    async with app.router.lifespan_context(app):
        assert workspace.root_fd >= 0
    assert workspace.root_fd == -1


async def test_json_error_helper() -> None:
    response = api.error_response(ErrorCode.TIMEOUT, "slow")
    assert response.status_code == 504
    assert json.loads(response.body) == {"error": {"code": "timeout", "message": "slow"}}


@pytest.mark.anyio
async def test_runner_lifespan_freezes_the_startup_heap(root, monkeypatch) -> None:  # noqa: ANN001
    import gc

    from agent_runner.api import create_app as make_app

    for setting, frozen in (("1", True), ("0", False)):
        monkeypatch.setenv("AGENT_RUNNER_GC_FREEZE", setting)
        app = make_app(root, "t" * 24, "ws")
        async with app.router.lifespan_context(app):
            assert (gc.get_freeze_count() > 0) is frozen
        assert gc.get_freeze_count() == 0
