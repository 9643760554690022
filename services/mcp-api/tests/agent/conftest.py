"""Agent test fixtures: a scripted model server over real HTTP and an app configured to use it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_api.settings import Settings
from mcp_helpers import TEST_KEY, Mcp
from model_servers import ScriptedModel, agent_env


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    server = ScriptedModel().start()
    yield server
    server.stop()


@pytest.fixture
def provider_kind() -> str:
    return "openai"


@pytest.fixture
def agent_overrides() -> dict:
    return {}


@pytest.fixture
def settings(tmp_path: Path, model: ScriptedModel, provider_kind: str, agent_overrides: dict) -> Settings:
    env = agent_env(model, provider_kind)
    agent = {
        "providers": json.loads(env["SECURE_AGENT_AGENT__PROVIDERS"]),
        "roles": json.loads(env["SECURE_AGENT_AGENT__ROLES"]),
        **agent_overrides,
    }
    return Settings(
        data_dir=tmp_path / "data", dev_api_key=TEST_KEY, runner={"idle_timeout_s": 60}, agent=agent
    )


@pytest.fixture
def client(http) -> Mcp:
    return Mcp(http=http, era="modern")
