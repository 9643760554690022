"""`secure-agent keys create|list|revoke` and `manifest`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from mcp_api.cli import main


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("SECURE_AGENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SECURE_AGENT_DEV_API_KEY", raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=False)


def test_create_list_revoke(cli, tmp_path):
    created = cli(
        "keys", "create", "--tenant", "acme", "--name", "ci", "--scope", "files:read", "--scope", "exec"
    )
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    assert key.startswith("sa_")
    key_id = key.split("_")[1]
    listed = json.loads(cli("keys", "list", "--json").output)
    assert listed == [
        {**listed[0], "key_id": key_id, "tenant": "acme", "name": "ci", "scopes": ["files:read", "exec"],
         "revoked_at": None}
    ]  # fmt: skip
    assert key.split("_", 2)[2] not in (tmp_path / "data" / "secure-agent.db").read_bytes().decode("latin-1")
    revoked = cli("keys", "revoke", key_id)
    assert revoked.exit_code == 0 and "Revoked" in revoked.output
    assert "revoked" in cli("keys", "list").output


def test_errors_are_clear(cli):
    bad_tenant = cli("keys", "create", "--tenant", "Not Valid")
    assert bad_tenant.exit_code != 0 and "tenant 'Not Valid' is invalid" in bad_tenant.output
    missing = cli("keys", "revoke", "doesnotexist")
    assert missing.exit_code != 0 and "no API key with id" in missing.output
    bad_scope = cli("keys", "create", "--tenant", "a", "--scope", "root")
    assert bad_scope.exit_code != 0 and "root" in bad_scope.output


def test_empty_list(cli):
    assert cli("keys", "list").output.strip() == "no keys"


def test_manifest_to_stdout_and_file(cli, tmp_path):
    out = cli("manifest")
    assert json.loads(out.output)["name"] == "secure-agent"
    target = tmp_path / "m.json"
    assert cli("manifest", "-o", str(target)).exit_code == 0
    assert json.loads(target.read_text())["tools"]
