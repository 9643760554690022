"""Every table of the store on a real PostgreSQL, through the same code as SQLite: API keys,
conversations, and the audit log with its append-only triggers and cross-process appends."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest
from mcp_api.auth.api_keys import ApiKeyService
from mcp_api.security.audit import AuditLog
from mcp_api.store.conversations import ConversationStore
from mcp_api.store.store import Store
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(postgres_url: str):
    store = Store(postgres_url)
    assert store.dialect == "postgresql"
    await store.create_schema()
    await store.ping()
    yield store
    await store.aclose()


async def test_api_keys(store: Store):
    keys = ApiKeyService(store)
    clear, info = await keys.create("acme", "ci", ["files:read", "files:write"])
    principal = await keys.verify(clear)
    assert principal is not None and principal.tenant == "acme"
    assert [k.key_id for k in await keys.list("acme")] == [info.key_id]
    await keys.revoke(info.key_id)
    assert await keys.verify(clear) is None
    assert (await keys.list("acme"))[0].revoked_at is not None


async def test_conversations(store: Store):
    conversations = ConversationStore(store)
    conv = await conversations.create("acme", title="t", workspace="default", role="default")
    await conversations.append(
        "acme", conv.id, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
        add_input_tokens=3, pending={"tool": "x"},
    )  # fmt: skip
    assert await conversations.claim("acme", conv.id, stale_after_s=60) is not None
    assert await conversations.claim("acme", conv.id, stale_after_s=60) is None  # held by the first run
    got = await conversations.get("acme", conv.id)
    assert got.status == "running" and got.input_tokens == 3 and got.pending == {"tool": "x"}
    assert got.message_count == 2 and got.created_at.tzinfo is not None
    assert [m["content"] for m in await conversations.messages("acme", conv.id)] == ["hi", "yo"]
    assert [c.id for c in await conversations.list("acme")] == [conv.id]
    assert await conversations.get("other", conv.id) is None
    assert await conversations.delete("acme", conv.id)
    assert await conversations.list("acme") == []


async def test_audit_chain_redaction_and_triggers(store: Store):
    log = AuditLog(store)
    for i in range(4):
        await log.record("test.action", f"user{i}", "acme", f"key:{i}", {"n": i})
    assert await log.redact("tenant.erase", "admin", tenant="acme") == 4
    report = await log.verify()
    assert report.ok and report.records == 5 and report.redacted == 4, report.problems
    for statement in (
        "DELETE FROM audit_events WHERE seq = 1",
        "UPDATE audit_events SET action = 'forged' WHERE seq = 2",
        "UPDATE audit_events SET actor = 'back' WHERE seq = 3",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with store.engine.begin() as conn:
                await conn.execute(text(statement))
    assert (await log.verify()).ok


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


async def test_concurrent_audit_writers_in_several_processes_keep_one_chain(store: Store):
    def spawn_and_wait() -> list[int]:
        workers = [
            subprocess.Popen([sys.executable, "-c", WRITER, store.url, str(w), "30"]) for w in range(3)
        ]
        return [w.wait(120) for w in workers]

    assert await anyio.to_thread.run_sync(spawn_and_wait) == [0, 0, 0]
    report = await AuditLog(store).verify()
    assert report.ok, report.problems
    assert report.records == 90
