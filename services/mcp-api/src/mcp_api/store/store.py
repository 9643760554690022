"""Async access to the store (SQLAlchemy 2): SQLite by default, any SQLAlchemy URL in a cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


class StoreUnavailable(RuntimeError):
    """The database cannot be reached; callers turn this into 503, never a 500."""


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=self.dialect != "sqlite")
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def create_schema(self) -> None:
        """Create or upgrade the schema with the Alembic migrations (store/migrate.py)."""
        from . import migrate  # Alembic costs ~0.5 s to import: only where the schema is built

        async with migrate.migration_lock(self.url), self.engine.connect() as conn:
            await conn.run_sync(migrate.upgrade)
            if conn.in_transaction():
                await conn.commit()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "not ready"
            raise StoreUnavailable(f"store at {self.dialect} is unreachable: {exc}") from exc

    async def aclose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets readers proceed while a writer commits; busy_timeout turns lock contention into a wait.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
