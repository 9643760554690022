"""Shared fixtures: an in-process app over httpx (real store, real runner processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from mcp_api.app import create_app
from mcp_api.settings import Settings
from mcp_helpers import TEST_KEY, Mcp


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", dev_api_key=TEST_KEY, runner={"idle_timeout_s": 60})


@pytest.fixture(autouse=True)
def _fresh_sse_shutdown_flag():
    """sse-starlette ends every SSE stream once any uvicorn server in the process has begun shutting
    down (a process-global flag). Tests that stop in-process servers set it; each test here is a new
    server, so start from a clean flag."""
    from sse_starlette.sse import AppStatus

    AppStatus.should_exit = False
    yield


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080", timeout=30) as client:
        yield client


@pytest.fixture(params=["legacy", "modern"])
def mcp(request, http: httpx.AsyncClient) -> Mcp:
    """Parametrized over both protocol eras: each test using it runs twice."""
    return Mcp(http=http, era=request.param)


@pytest.fixture
def workspace(settings: Settings) -> Path:
    path = settings.workspaces_dir / settings.dev_tenant / "default"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def profiles_dir(tmp_path: Path) -> Path:
    """An empty AgentProfile directory (profile_helpers.profile_settings points the app at it)."""
    path = tmp_path / "profiles"
    path.mkdir()
    return path
