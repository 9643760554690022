"""Schema migrations (Alembic) applied by `Store.create_schema()` at start-up, on SQLite and PostgreSQL.

- A new database is built by running every revision in `migrations/versions/`.
- A database created before migrations existed (tables, no `alembic_version`) is completed with
  `create_all` and stamped at head, so an existing `.data/secure-agent.db` keeps working.
- Replicas starting together are serialised: PostgreSQL by an advisory lock held in the migration
  transaction (migrations/env.py), a SQLite file by an exclusive lock on `<db>.migrate.lock`.

A model change needs a new revision (`alembic revision --autogenerate`, see migrations/alembic.ini);
tests/store/test_migrations.py fails while the models and the migrations differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

# Alembic narrates at INFO, from its very import ("setup plugin ...") to every start ("Context impl
# ..."): noise in JSON logs and CLI output. Set before the imports below, which already log.
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import inspect  # noqa: E402
from sqlalchemy.engine import Connection, make_url  # noqa: E402

from .tables import Base  # noqa: E402

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> None:
    """Bring the database at `connection` to the head revision (sync; run it with `run_sync`)."""
    tables = set(inspect(connection).get_table_names())
    config = alembic_config(connection)
    if VERSION_TABLE not in tables and tables & set(Base.metadata.tables):
        # Created by create_all before migrations existed: add what is missing, then adopt it.
        Base.metadata.create_all(connection)
        command.stamp(config, "head")
    else:
        command.upgrade(config, "head")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_IN_PROCESS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def migration_lock(url: str) -> AsyncIterator[None]:
    """Serialise migrations: in this process (Alembic's `context` is module-global), and across
    processes on one SQLite file (PostgreSQL: an advisory lock in env.py)."""
    local = _IN_PROCESS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with local:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
            yield
            return
        lock = _file_lock(Path(parsed.database + ".migrate.lock"))
        await asyncio.to_thread(lock.__enter__)
        try:
            yield
        finally:
            lock.__exit__(None, None, None)
