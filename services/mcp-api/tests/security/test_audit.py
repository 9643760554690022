"""The audit log: chained records, verification, and every kind of tampering detected."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner
from mcp_api.cli import main
from mcp_api.security.audit import AuditLog
from mcp_api.store.store import Store

pytestmark = pytest.mark.anyio


@pytest.fixture
async def audit(tmp_path: Path):
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")
    await store.create_schema()
    log = AuditLog(store)
    for i in range(6):
        await log.record(f"test.action{i % 2}", f"cli:user{i}", "acme", f"key:k{i}", {"n": i})
    yield log
    await store.aclose()


def raw(tmp_path: Path) -> sqlite3.Connection:
    """What an attacker with file access does: open the database directly and drop the guards."""
    conn = sqlite3.connect(tmp_path / "audit.db")
    conn.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    conn.execute("DROP TRIGGER IF EXISTS audit_events_redact_only")
    return conn


async def test_untouched_log_verifies(audit):
    report = await audit.verify()
    assert report.ok, report.problems
    assert report.records == 6 and report.head_seq == 6
    assert (await audit.head()) == (6, report.head_hash)


async def test_database_refuses_deletes_and_edits(audit, tmp_path):
    conn = sqlite3.connect(tmp_path / "audit.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit_events WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit_events SET action = 'x' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit_events SET details = '{}' WHERE seq = 2")


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("UPDATE audit_events SET details = '{\"n\": 99}' WHERE seq = 3", "#3 (test.action0) was altered: actor"),
        ("UPDATE audit_events SET actor = 'cli:someone-else' WHERE seq = 2", "#2 (test.action1) was altered: actor"),
        ("UPDATE audit_events SET action = 'key.create' WHERE seq = 4", "#4 (key.create) was altered: its hash"),
        ("UPDATE audit_events SET at = '2020-01-01T00:00:00.000000Z' WHERE seq = 1", "#1 (test.action0) was altered"),
        ("DELETE FROM audit_events WHERE seq = 3", "records #3 are missing"),
        ("DELETE FROM audit_events WHERE seq IN (1, 2)", "records #1-#2 are missing"),
        # A fake erasure: subject data dropped to hide it, pointing at a record that is no redaction.
        ("UPDATE audit_events SET actor=NULL, tenant=NULL, target=NULL, details=NULL, nonce=NULL, "
         "redacted_by=5 WHERE seq = 2", "marked redacted by #5, which is no redaction record"),
    ],
)  # fmt: skip
async def test_each_kind_of_tampering_is_detected(audit, tmp_path, tamper, expected):
    conn = raw(tmp_path)
    conn.execute(tamper)
    conn.commit()
    report = await audit.verify()
    assert not report.ok
    assert any(expected in p for p in report.problems), report.problems


async def test_reordering_is_detected(audit, tmp_path):
    conn = raw(tmp_path)
    rows = {r[0]: r for r in conn.execute("SELECT * FROM audit_events WHERE seq IN (2, 5)")}
    columns = [d[1] for d in conn.execute("PRAGMA table_info(audit_events)")]
    conn.execute("DELETE FROM audit_events WHERE seq IN (2, 5)")
    # Swap records 2 and 5 wholesale (contents and hashes), keeping the sequence numbers in place.
    for seq, source in ((2, rows[5]), (5, rows[2])):
        values = dict(zip(columns, source, strict=True)) | {"seq": seq}
        conn.execute(
            f"INSERT INTO audit_events ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            list(values.values()),
        )
    conn.commit()
    report = await audit.verify()
    assert any("chain broken" in p for p in report.problems), report.problems
    assert any("#2" in p and "altered" in p for p in report.problems), report.problems


async def test_truncation_of_the_newest_records_needs_an_anchor(audit, tmp_path):
    anchor = await audit.head()
    conn = raw(tmp_path)
    conn.execute("DELETE FROM audit_events WHERE seq >= 5")
    conn.commit()
    assert (await audit.verify()).ok  # a shorter chain is still a chain ...
    report = await audit.verify(anchor)  # ... but not the one that was anchored
    assert any("truncated" in p for p in report.problems), report.problems


async def test_redaction_keeps_the_chain_valid_and_is_accounted_for(audit, tmp_path):
    await audit.record("key.create", "cli:x", "other", "key:o1", {"email": "jane@example.com"})
    erased = await audit.redact("tenant.erase", "cli:admin", tenant="acme", meta={"tenant_hash": "h"})
    assert erased == 6
    report = await audit.verify()
    assert report.ok, report.problems
    assert report.redacted == 6
    events = await audit.events()
    assert all(e["actor"] is None and e["details"] is None for e in events[:6])
    assert events[6]["tenant"] == "other" and events[6]["details"] == {"email": "[REDACTED:pii]"}
    assert events[7]["action"] == "tenant.erase" and events[7]["meta"]["redacted"] == 6
    # Un-doing or widening the erasure outside the log is caught by the redaction record's digest.
    conn = raw(tmp_path)
    conn.execute("UPDATE audit_events SET actor=NULL, tenant=NULL, target=NULL, details=NULL, nonce=NULL, "
                 "redacted_by=8 WHERE seq = 7")  # fmt: skip
    conn.commit()
    report = await audit.verify()
    assert any("accounts for 6 redacted records, but 7" in p for p in report.problems), report.problems


async def test_secrets_in_details_are_not_stored(audit, tmp_path):
    await audit.record("settings.reload", "system", None, None, {"api_key": "sa_ABCDEFGHIJKL_" + "s" * 30,
                                                                  "note": "Bearer abc.def.ghi token"})  # fmt: skip
    data = (tmp_path / "audit.db").read_bytes() + (tmp_path / "audit.db-wal").read_bytes()
    assert b"s" * 30 not in data and b"abc.def.ghi" not in data


async def test_records_are_logged_as_json_lines(audit, caplog):
    with caplog.at_level(logging.INFO, logger="mcp_api.audit"):
        record = await audit.record("key.revoke", "cli:me", "acme", "key:k1", {})
    line = next(r for r in caplog.records if r.getMessage() == "audit")
    assert (
        line.audit_action == "key.revoke" and line.audit_seq == record.seq and line.audit_hash == record.hash
    )
    assert line.audit_tenant and line.audit_tenant != "acme"  # hashed, as every log line's tenant


WRITER = """
import asyncio, sys
from mcp_api.security.audit import AuditLog
from mcp_api.store.store import Store

async def run(url, worker, count):
    store = Store(url)
    log = AuditLog(store)
    for i in range(count):
        await log.record("concurrent.write", f"worker{worker}", "t", None, {"i": i})
    await store.aclose()

asyncio.run(run(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_concurrent_writers_in_several_processes_keep_one_chain(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    store = Store(url)
    await store.create_schema()

    def spawn_and_wait() -> list[int]:
        workers = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(w), "40"]) for w in range(3)]
        return [w.wait(120) for w in workers]

    assert await anyio.to_thread.run_sync(spawn_and_wait) == [0, 0, 0]
    report = await AuditLog(store).verify()
    assert report.ok, report.problems
    assert report.records == 120
    await store.aclose()


def test_cli_verify_and_key_commands_are_audited(tmp_path, monkeypatch):
    monkeypatch.setenv("SECURE_AGENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SECURE_AGENT_DEV_API_KEY", raising=False)
    runner = CliRunner()

    def cli(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)

    key = cli("keys", "create", "--tenant", "acme").output.strip().splitlines()[-1]
    assert cli("keys", "revoke", key.split("_")[1]).exit_code == 0
    listed = [json.loads(line) for line in cli("audit", "list").output.splitlines()]
    assert [e["action"] for e in listed] == ["key.create", "key.revoke"]
    assert listed[0]["actor"].startswith("cli:") and listed[0]["tenant"] == "acme"
    assert key.split("_", 2)[2] not in json.dumps(listed)
    head = cli("audit", "head").output.strip()
    ok = cli("audit", "verify")
    assert ok.exit_code == 0 and "intact: 2 records" in ok.output
    assert cli("audit", "verify", "--anchor", head).exit_code == 0
    conn = sqlite3.connect(tmp_path / "data" / "secure-agent.db")
    conn.execute("DROP TRIGGER audit_events_redact_only")
    conn.execute("UPDATE audit_events SET target = 'key:other' WHERE seq = 1")
    conn.commit()
    bad = runner.invoke(main, ["audit", "verify", "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.output)["ok"] is False
