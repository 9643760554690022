"""First-start set-up of the embedded default: the dev tenant's API key and ready-to-paste configs."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from .auth.api_keys import ApiKeyService
from .auth.scopes import ALL_SCOPES
from .settings import Settings

log = logging.getLogger(__name__)
DEV_KEY_NAME = "dev"


@dataclass
class DevKey:
    key: str | None  # clear text only when created now; None when it already existed
    key_id: str
    created: bool


async def ensure_dev_key(settings: Settings, keys: ApiKeyService) -> DevKey:
    """Create the dev key once. With SECURE_AGENT_DEV_API_KEY the key is fixed (its hash is stored)."""
    fixed = settings.dev_api_key.get_secret_value() if settings.dev_api_key else None
    if fixed:
        existing = await keys.find(fixed)
        if existing is not None:
            if await keys.verify(fixed) is None:
                raise RuntimeError(
                    f"SECURE_AGENT_DEV_API_KEY has id {existing.key_id}, which is revoked or belongs to another "
                    "secret; pick a new key or unset the variable"
                )
            return DevKey(key=None, key_id=existing.key_id, created=False)
        key, info = await keys.create(settings.dev_tenant, DEV_KEY_NAME, ALL_SCOPES, key=fixed)
        return DevKey(key=None, key_id=info.key_id, created=True)
    active = [k for k in await keys.list(settings.dev_tenant) if k.active and k.name == DEV_KEY_NAME]
    if active:
        return DevKey(key=None, key_id=active[0].key_id, created=False)
    key, info = await keys.create(settings.dev_tenant, DEV_KEY_NAME, ALL_SCOPES)
    return DevKey(key=key, key_id=info.key_id, created=True)


def client_configs(url: str, key: str) -> dict[str, str]:
    """Configs a user pastes as they are; each points at `url` and sends the key as a Bearer token."""
    claude_desktop = {
        "mcpServers": {
            "secure-agent": {
                "command": "npx",
                "args": ["-y", "mcp-remote@0.15.1", url, "--header", "Authorization:${AUTH_HEADER}",
                         "--transport", "http-only"],
                "env": {"AUTH_HEADER": f"Bearer {key}"},
            }
        }
    }  # fmt: skip
    cursor = {"mcpServers": {"secure-agent": {"url": url, "headers": {"Authorization": f"Bearer {key}"}}}}
    claude_code = f'claude mcp add --transport http secure-agent {url} --header "Authorization: Bearer {key}"'
    return {
        "Claude Desktop (claude_desktop_config.json)": json.dumps(claude_desktop, indent=2),
        "Cursor (~/.cursor/mcp.json)": json.dumps(cursor, indent=2),
        "Claude Code (shell)": claude_code,
    }


def banner(settings: Settings, dev: DevKey) -> str:
    lines = [f"secure-agent is serving MCP at {settings.mcp_url}"]
    if dev.key:
        lines += [
            "",
            "A dev API key was created for tenant "
            f"'{settings.dev_tenant}'. It is shown ONCE; only its hash is stored:",
            f"    {dev.key}",
            "",
        ]
        for title, text in client_configs(settings.mcp_url, dev.key).items():
            lines += [f"--- {title} ---", text, ""]
    elif dev.created:
        # The key came from the environment: echo a placeholder, never the secret, into logs.
        lines.append(f"Dev API key {dev.key_id} registered from SECURE_AGENT_DEV_API_KEY.")
        for title, text in client_configs(settings.mcp_url, "<value of SECURE_AGENT_DEV_API_KEY>").items():
            lines += [f"--- {title} ---", text, ""]
    else:
        lines.append(
            f"Dev API key {dev.key_id} exists (its clear text was shown when it was created). "
            "New key: 'secure-agent keys create --tenant dev'."
        )
    return "\n".join(lines)
