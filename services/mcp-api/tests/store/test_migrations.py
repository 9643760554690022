"""Alembic migrations: they build the schema on SQLite and PostgreSQL, adopt a database created before
migrations existed, and match the models exactly (add a column without a revision and this fails)."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from mcp_api.store import migrate
from mcp_api.store.store import Store
from mcp_api.store.tables import Base
from sqlalchemy import inspect

pytestmark = pytest.mark.anyio


def _drift(connection) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


async def _check(url: str) -> None:
    store = Store(url)
    try:
        await store.create_schema()
        await store.create_schema()  # idempotent: a restart changes nothing
        async with store.engine.connect() as conn:
            assert await conn.run_sync(migrate.current_revision) == migrate.head_revision()
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            assert set(Base.metadata.tables) <= tables
            diff = await conn.run_sync(_drift)
        assert diff == [], (
            "the models differ from the migrations: add a revision "
            f"(alembic revision --autogenerate, see store/migrations/alembic.ini): {diff}"
        )
    finally:
        await store.aclose()


async def test_sqlite_migrations_match_the_models(tmp_path: Path):
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


async def test_postgresql_migrations_match_the_models(postgres_url: str):
    await _check(postgres_url)


def test_one_head_and_a_linear_history():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert len(script.get_heads()) == 1
    assert all(len(r.nextrev) <= 1 for r in script.walk_revisions())


async def test_a_database_from_before_migrations_is_adopted(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    async with store.engine.begin() as conn:  # what create_schema did before migrations
        await conn.run_sync(lambda c: Base.metadata.tables["api_keys"].create(c))
    await store.create_schema()
    async with store.engine.connect() as conn:
        assert await conn.run_sync(migrate.current_revision) == migrate.head_revision()
        assert await conn.run_sync(_drift) == []
    await store.aclose()


async def test_sqlite_gets_the_audit_triggers_from_the_migration(tmp_path: Path):
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    await store.create_schema()
    await store.aclose()
    names = {
        r[0]
        for r in sqlite3.connect(tmp_path / "t.db").execute(
            "SELECT name FROM sqlite_master WHERE type='trigger'"
        )
    }
    assert names == {"audit_events_no_delete", "audit_events_redact_only"}


MIGRATE = """
import asyncio, sys
from mcp_api.store.store import Store

async def run(url):
    store = Store(url)
    await store.create_schema()
    await store.aclose()

asyncio.run(run(sys.argv[1]))
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_replicas_starting_together_migrate_once(backend, tmp_path: Path, request):
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'race.db'}"
    else:
        url = await request.getfixturevalue("postgres_server").create_database("race_" + secrets.token_hex(4))

    def spawn_and_wait() -> list[int]:
        procs = [subprocess.Popen([sys.executable, "-c", MIGRATE, url]) for _ in range(2)]
        return [p.wait(120) for p in procs]

    assert await anyio.to_thread.run_sync(spawn_and_wait) == [0, 0]
    # and in one process, several stores at once
    stores = [Store(url) for _ in range(3)]
    try:
        await asyncio.gather(*(s.create_schema() for s in stores))
        async with stores[0].engine.connect() as conn:
            assert await conn.run_sync(migrate.current_revision) == migrate.head_revision()
            assert await conn.run_sync(_drift) == []
    finally:
        for s in stores:
            await s.aclose()


async def test_0002_adds_key_expiry_and_keeps_the_keys_of_a_0001_store(tmp_path: Path):
    """A store of the first release (revision 0001) is upgraded in place: its keys stay, with no expiry."""
    from alembic import command
    from sqlalchemy import text

    url = f"sqlite+aiosqlite:///{tmp_path / 'v1.db'}"
    store = Store(url)
    async with store.engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(migrate.alembic_config(c), "0001"))
        await conn.execute(
            text(
                "INSERT INTO api_keys (key_id, tenant, name, salt, secret_hash, scopes, created_at) "
                "VALUES ('k1', 'acme', 'ci', 's', 'h', 'exec', '2026-01-01 00:00:00')"
            )
        )
    await store.create_schema()
    async with store.engine.connect() as conn:
        assert await conn.run_sync(migrate.current_revision) == migrate.head_revision() == "0002"
        rows = (await conn.execute(text("SELECT key_id, tenant, expires_at FROM api_keys"))).all()
        assert [tuple(r) for r in rows] == [("k1", "acme", None)]
        assert await conn.run_sync(_drift) == []
    await store.aclose()


def test_alembic_says_nothing_at_info_from_its_import_on(tmp_path):
    """Alembic logs at INFO on import and on every upgrade; with INFO logging on, a server start would
    print those lines (fresh interpreter: nothing else has imported alembic yet)."""
    import subprocess
    import sys

    script = (
        "import asyncio, logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(name)s %(message)s')\n"
        "from mcp_api.store.store import Store\n"
        "async def main():\n"
        f"    store = Store('sqlite+aiosqlite:///{tmp_path}/s.db')\n"
        "    await store.create_schema()\n"
        "    await store.aclose()\n"
        "asyncio.run(main())\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == "ok"
    assert "alembic" not in out.stdout + out.stderr
