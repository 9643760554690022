"""`secure-agent keys rotate`: a new key of the same tenant, name and scopes is printed once, the old one
is refused at once (or after --grace, even by a verifier that cached it), the rotation is audited, and a
refused rotation (unknown, revoked or expired key, bad --grace) changes nothing."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner
from mcp_api.auth.api_keys import ApiKeyService
from mcp_api.cli import main
from mcp_api.settings import Settings
from mcp_api.store.store import Store


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("SECURE_AGENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SECURE_AGENT_DEV_API_KEY", raising=False)
    monkeypatch.delenv("SECURE_AGENT_DATABASE_URL", raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=False)


def verify(*keys: str, cache_ttl_s: float = 0.0, between: float = 0.0) -> list:
    """What the server's authentication says about each key (a fresh ApiKeyService on the same store);
    with `between`, every key is verified again after that many seconds, by the same (caching) service."""

    async def run():
        store = Store(Settings().store_url)
        try:
            svc = ApiKeyService(store, cache_ttl_s=cache_ttl_s)
            first = [await svc.verify(k) for k in keys]
            if not between:
                return first
            await asyncio.sleep(between)
            return first + [await svc.verify(k) for k in keys]
        finally:
            await store.aclose()

    return asyncio.run(run())


def create(cli, *args: str) -> str:
    created = cli(
        "keys",
        "create",
        "--tenant",
        "acme",
        "--name",
        "ci",
        "--scope",
        "files:read",
        "--scope",
        "exec",
        *args,
    )
    assert created.exit_code == 0, created.output
    return created.output.strip().splitlines()[-1]


def key_id(key: str) -> str:
    return key.split("_")[1]


def audit(cli) -> list[dict]:
    return [json.loads(line) for line in cli("audit", "list", "--limit", "1000").output.splitlines()]


def test_rotate_revokes_the_old_key_at_once(cli):
    old = create(cli)
    rotated = cli("keys", "rotate", key_id(old))
    assert rotated.exit_code == 0, rotated.output
    lines = rotated.output.strip().splitlines()
    new = lines[-1]  # printed once, last, as `keys create` does
    assert new.startswith("sa_") and new != old
    assert lines[-2] == "Store it now; it cannot be shown again:"
    assert f"rotated from {key_id(old)}" in rotated.output and f"Revoked key {key_id(old)}" in rotated.output

    old_principal, new_principal = verify(old, new)
    assert old_principal is None
    assert new_principal.tenant == "acme" and new_principal.scopes == {"files:read", "exec"}
    listed = {k["key_id"]: k for k in json.loads(cli("keys", "list", "--json").output)}
    assert listed[key_id(old)]["revoked_at"] is not None
    assert {**listed[key_id(new)], "key_id": None, "created_at": None} == {
        "key_id": None, "tenant": "acme", "name": "ci", "scopes": ["files:read", "exec"],
        "created_at": None, "revoked_at": None, "expires_at": None,
    }  # fmt: skip

    records = audit(cli)
    assert [r["action"] for r in records] == ["key.create", "key.create", "key.rotate"]
    assert records[1]["target"] == f"key:{key_id(new)}"
    assert records[1]["details"]["rotated_from"] == key_id(old)
    assert records[2]["target"] == f"key:{key_id(old)}" and records[2]["tenant"] == "acme"
    assert records[2]["details"]["rotated_to"] == key_id(new) and records[2]["details"]["grace_s"] == 0
    assert cli("audit", "verify").exit_code == 0


def test_rotate_with_grace_keeps_the_old_key_until_then(cli):
    old = create(cli)
    rotated = cli("keys", "rotate", key_id(old), "--grace", "2s")
    assert rotated.exit_code == 0, rotated.output
    new = rotated.output.strip().splitlines()[-1]
    assert f"{key_id(old)} of tenant acme keeps working until" in rotated.output
    listed = {k["key_id"]: k for k in json.loads(cli("keys", "list", "--json").output)}
    assert listed[key_id(old)]["revoked_at"] is None and listed[key_id(old)]["expires_at"]
    assert "active until" in cli("keys", "list").output

    # Both work during the grace period; afterwards the old one is refused, and so it is by a verifier
    # with a 30 s cache that trusted it a moment before it expired.
    before_old, before_new, after_old, after_new = verify(old, new, cache_ttl_s=30, between=2.5)
    assert before_old is not None and before_old.tenant == "acme"
    assert before_new is not None and before_new.scopes == before_old.scopes
    assert after_old is None and after_new is not None
    assert "expired" in cli("keys", "list").output

    records = audit(cli)
    assert records[-1]["action"] == "key.rotate" and records[-1]["details"]["grace_s"] == 2.0
    assert records[-1]["details"]["ends_at"] == listed[key_id(old)]["expires_at"]

    # An expired key cannot be rotated (again): nothing changes.
    again = cli("keys", "rotate", key_id(old))
    assert again.exit_code != 0 and f"key {key_id(old)} expired at" in again.output
    assert len(audit(cli)) == len(records)


def test_a_refused_rotation_changes_nothing(cli):
    old = create(cli)
    assert cli("keys", "revoke", key_id(old)).exit_code == 0
    keys_before, audit_before = cli("keys", "list", "--json").output, audit(cli)

    unknown = cli("keys", "rotate", "doesnotexist")
    assert unknown.exit_code != 0 and "no API key with id 'doesnotexist'" in unknown.output
    revoked = cli("keys", "rotate", key_id(old))
    assert revoked.exit_code != 0 and f"key {key_id(old)} was revoked at" in revoked.output
    bad_grace = cli("keys", "rotate", key_id(old), "--grace", "soon")
    assert bad_grace.exit_code != 0 and "'soon' is not a duration" in bad_grace.output
    for result in (unknown, revoked, bad_grace):
        assert "sa_" not in result.output  # no key was printed

    assert cli("keys", "list", "--json").output == keys_before
    assert audit(cli) == audit_before


def test_a_rotated_key_can_be_rotated_again(cli):
    # The rotated key's successor is rotated in turn: the chain works key by key.
    first = create(cli)
    second = cli("keys", "rotate", key_id(first)).output.strip().splitlines()[-1]
    third = cli("keys", "rotate", key_id(second), "--grace", "1h").output.strip().splitlines()[-1]
    a, b, c = verify(first, second, third)
    assert a is None and b is not None and c is not None and b.tenant == c.tenant == "acme"
    names = {k["name"] for k in json.loads(cli("keys", "list", "--json").output)}
    assert names == {"ci"}
