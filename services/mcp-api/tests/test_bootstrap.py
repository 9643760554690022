"""First start: the dev key and the ready-to-paste client configs."""

from __future__ import annotations

import json

import pytest
from mcp_api.auth.api_keys import ApiKeyService
from mcp_api.bootstrap import banner, client_configs, ensure_dev_key
from mcp_api.settings import Settings
from mcp_api.store.store import Store
from mcp_helpers import TEST_KEY

pytestmark = pytest.mark.anyio


@pytest.fixture
async def keys(tmp_path):
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await store.create_schema()
    yield ApiKeyService(store)
    await store.aclose()


async def test_generated_dev_key_is_printed_once(tmp_path, keys):
    settings = Settings(data_dir=tmp_path)
    first = await ensure_dev_key(settings, keys)
    assert first.created and first.key and await keys.verify(first.key)
    text = banner(settings, first)
    assert first.key in text and "mcp-remote@0.15.1" in text and "claude mcp add --transport http" in text
    second = await ensure_dev_key(settings, keys)
    assert not second.created and second.key is None
    assert first.key not in banner(settings, second)


async def test_fixed_dev_key_is_registered_and_never_echoed(tmp_path, keys):
    settings = Settings(data_dir=tmp_path, dev_api_key=TEST_KEY)
    dev = await ensure_dev_key(settings, keys)
    assert dev.created and (await keys.verify(TEST_KEY)).tenant == "dev"
    assert TEST_KEY not in banner(settings, dev)
    again = await ensure_dev_key(settings, keys)
    assert not again.created


async def test_revoked_fixed_key_is_a_clear_startup_error(tmp_path, keys):
    settings = Settings(data_dir=tmp_path, dev_api_key=TEST_KEY)
    dev = await ensure_dev_key(settings, keys)
    await keys.revoke(dev.key_id)
    with pytest.raises(RuntimeError, match="revoked"):
        await ensure_dev_key(settings, keys)


def test_client_configs_parse_and_point_at_the_endpoint():
    configs = client_configs("http://localhost:8080/mcp", "sa_x")
    desktop = json.loads(configs["Claude Desktop (claude_desktop_config.json)"])["mcpServers"]["secure-agent"]
    assert (
        desktop["args"][2] == "http://localhost:8080/mcp" and desktop["env"]["AUTH_HEADER"] == "Bearer sa_x"
    )
    cursor = json.loads(configs["Cursor (~/.cursor/mcp.json)"])["mcpServers"]["secure-agent"]
    assert cursor == {"url": "http://localhost:8080/mcp", "headers": {"Authorization": "Bearer sa_x"}}
    assert configs["Claude Code (shell)"].endswith('--header "Authorization: Bearer sa_x"')
