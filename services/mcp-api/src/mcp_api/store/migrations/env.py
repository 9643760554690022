"""Alembic environment for the store: async engines (aiosqlite, asyncpg), SQLite and PostgreSQL.

Used two ways:
- at start-up, `Store.create_schema()` (store/migrate.py) hands in an open connection through
  `config.attributes["connection"]`;
- from a shell, `alembic -c src/mcp_api/store/migrations/alembic.ini upgrade head` (from
  services/mcp-api), with the URL from `-x url=...`, else `SECURE_AGENT_DATABASE_URL`/settings.
"""

from __future__ import annotations

import asyncio

from alembic import context
from mcp_api.store.tables import Base
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

# Any constant: serialises the migrations of replicas starting together on one PostgreSQL.
PG_MIGRATION_LOCK = 0x5EC0A6E7

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from mcp_api.settings import Settings

    return Settings().store_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Held to the end of the migration transaction; the version table is read after it.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _run(given)
else:
    asyncio.run(_run_async(_url()))
