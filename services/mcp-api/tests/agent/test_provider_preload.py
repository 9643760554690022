"""The model SDKs are imported at start-up, not by the first agent_run: their import (0.5-1.5 s) on
the event loop would stall every request in flight. Checked in a fresh interpreter, where nothing
else has imported them yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import asyncio, json, sys
from mcp_api.app import create_app
from mcp_api.settings import Settings

async def main():
    settings = Settings(data_dir=sys.argv[1], agent={"providers": json.loads(sys.argv[2])})
    app = create_app(settings)
    before = {m: m in sys.modules for m in ("openai", "anthropic")}
    async with app.router.lifespan_context(app):
        after = {m: m in sys.modules for m in ("openai", "anthropic")}
    print(json.dumps({"before": before, "after": after}))

asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("providers", "expected"),
    [
        ({"main": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}}, {"openai"}),
        ({"main": {"kind": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "k"}}, {"anthropic"}),
        ({}, set()),
    ],
)
def test_configured_provider_sdks_are_imported_during_startup(tmp_path, providers, expected):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_AGENT_")}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "data"), json.dumps(providers)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert not any(result["before"].values()), result
    assert {m for m, loaded in result["after"].items() if loaded} == expected, result
