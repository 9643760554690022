"""Retention purge, per-tenant export and erase: purged data is gone from every table and from disk."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from mcp_api.cli import main
from mcp_api.security.pii import StorageRedactor
from mcp_api.security.privacy import PrivacyContext, erase_tenant, export_tenant
from mcp_api.security.retention import PurgeContext, purge_expired
from mcp_api.settings import Settings
from mcp_api.store.tables import Base
from mcp_helpers import Mcp
from sqlalchemy import select

pytestmark = pytest.mark.anyio
MARK = "acme-private-marker"


async def all_rows(store) -> list[dict]:
    rows = []
    async with store.session() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).mappings():
                rows.append({"table": table.name, **row})
    return rows


async def seed(app, http, settings):
    services = app.state.services
    key, info = await services.keys.create("acme", MARK, ["files:read", "files:write"], actor="cli:ops")
    client = Mcp(http=http, key=key)
    assert not (await client.call("write_file", path="notes/a.txt", content=f"{MARK} data")).get("isError")
    await services.audit.record(
        "conversation.export", f"oauth:{MARK}", "acme", "conversation:1", {"who": MARK}
    )
    return key, info


async def test_export_then_erase_a_tenant(app, http, settings, tmp_path):
    services = app.state.services
    key, info = await seed(app, http, settings)
    await services.keys.create("bystander", "b", ["files:read"])
    ctx = PrivacyContext(settings, services.store, services.keys, services.audit)

    archive = tmp_path / "acme.tar.gz"
    manifest = await export_tenant(ctx, "acme", archive, "cli:ops")
    assert set(manifest["sources"]) == {"api_keys", "workspaces", "audit", "agent_conversations"}
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert "workspaces/default/notes/a.txt" in names
        assert tar.extractfile("workspaces/default/notes/a.txt").read() == f"{MARK} data".encode()
        keys = json.load(tar.extractfile("api_keys.json"))
        assert keys[0]["key_id"] == info.key_id and "secret_hash" not in keys[0]
        assert keys[0]["expires_at"] is None and keys[0]["revoked_at"] is None
        audit = json.load(tar.extractfile("audit.json"))
        assert {e["action"] for e in audit} >= {"key.create", "conversation.export"}
    assert (archive.stat().st_mode & 0o777) == 0o600

    await services.runners.aclose()  # the tenant's runner would otherwise keep the directory open
    counts = await erase_tenant(ctx, "acme", "cli:ops")
    assert counts["api_keys"] == 1 and counts["workspaces"] >= 1 and counts["audit"] >= 3
    # Gone from every table ...
    leftovers = [r for r in await all_rows(services.store) if MARK in json.dumps(r, default=str) or "acme" in
                 {r.get("tenant")}]  # fmt: skip
    assert leftovers == []
    # ... and from disk, while other tenants keep theirs.
    assert not (settings.workspaces_dir / "acme").exists()
    assert [k.tenant for k in await services.keys.list()] == ["dev", "bystander"]
    assert (await Mcp(http=http, key=key).post("tools/list")).status_code == 401
    report = await services.audit.verify()
    assert report.ok, report.problems
    erase = (await services.audit.events())[-1]
    assert erase["action"] == "tenant.erase" and erase["tenant"] is None and "acme" not in json.dumps(erase)


async def test_retention_purges_old_audit_payloads_only(app, settings):
    services = app.state.services
    await services.audit.record("key.create", "cli:old", "acme", "key:x", {"who": MARK})
    ctx = PurgeContext(settings, services.store, services.audit)
    assert await purge_expired(ctx) == {"audit_payloads": 0}  # nothing is a year old yet
    later = datetime.now(UTC) + timedelta(days=settings.retention.audit_payload_days + 1)
    removed = await purge_expired(ctx, now=later)
    assert removed["audit_payloads"] >= 2  # the dev key's creation and the record above
    assert not [r for r in await all_rows(services.store) if MARK in json.dumps(r, default=str)]
    events = await services.audit.events()
    assert events[-1]["action"] == "retention.purge" and events[-1]["meta"]["rule"] == "audit_payloads"
    assert (await services.audit.verify()).ok
    assert await purge_expired(ctx, now=later) == {"audit_payloads": 0}  # idempotent, no empty records


async def test_retention_zero_keeps_forever(app, tmp_path):
    services = app.state.services
    settings = Settings(data_dir=tmp_path / "x", retention={"audit_payload_days": 0})
    ctx = PurgeContext(settings, services.store, services.audit)
    assert await purge_expired(ctx, now=datetime.now(UTC) + timedelta(days=10_000)) == {}


def test_pii_and_secret_redaction_for_storage():
    redactor = StorageRedactor(Settings(privacy={"pii_patterns": [r"CUST-\d{6}"]}).privacy)
    stored = redactor.value({
        "note": "mail jane.doe@example.com, card 4111 1111 1111 1111, customer CUST-123456",
        "password": "hunter2hunter2", "nested": [{"auth": "Bearer eyJhbGciOi.eyJzdWIiOi.sig"}],
        "count": 3,
    })  # fmt: skip
    text = json.dumps(stored)
    for leaked in ("jane.doe", "4111", "CUST-123456", "hunter2", "eyJzdWIiOi"):
        assert leaked not in text
    assert stored["count"] == 3 and "[REDACTED:pii]" in stored["note"]
    with pytest.raises(ValueError, match="not a regex"):
        StorageRedactor(Settings(privacy={"pii_patterns": ["("]}).privacy)


def test_cli_export_erase_and_purge(tmp_path, monkeypatch):
    monkeypatch.setenv("SECURE_AGENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SECURE_AGENT_DEV_API_KEY", raising=False)
    runner = CliRunner()

    def cli(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)

    assert cli("keys", "create", "--tenant", "acme").exit_code == 0
    files = tmp_path / "data" / "workspaces" / "acme" / "default"
    files.mkdir(parents=True)
    (files / "f.txt").write_text("hello")
    out = tmp_path / "export.tar.gz"
    exported = cli("tenant", "export", "acme", "-o", str(out))
    assert exported.exit_code == 0 and out.exists()
    with tarfile.open(fileobj=io.BytesIO(out.read_bytes())) as tar:
        assert "workspaces/default/f.txt" in tar.getnames()
    assert runner.invoke(main, ["tenant", "erase", "acme"], input="n\n").exit_code != 0  # asks first
    erased = cli("tenant", "erase", "acme", "--yes")
    assert erased.exit_code == 0 and '"api_keys": 1' in erased.output
    assert not files.exists() and cli("keys", "list").output.strip() == "no keys"
    assert cli("audit", "verify").exit_code == 0
    assert cli("retention", "purge").exit_code == 0
    bad = runner.invoke(main, ["tenant", "erase", "Not Valid", "--yes"])
    assert bad.exit_code != 0 and "invalid" in bad.output
