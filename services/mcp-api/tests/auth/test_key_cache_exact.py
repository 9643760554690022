"""The exact API-key cache of the SQLite store: as fresh as a SELECT per request, without the SELECT.

A verified key is served from memory only while `PRAGMA data_version` (on a dedicated connection)
shows no commit at all since the lookup that filled the entry. These tests warm the cache, prove the
warm check does no SELECT, then change the key from elsewhere (a real second process running the CLI,
a separate SQLAlchemy engine, a raw sqlite3 connection) and require the very next check to see it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest
from mcp_api.auth import api_keys
from mcp_api.auth.api_keys import ApiKeyService, _DataVersion, _hash
from mcp_api.deps import build_services
from mcp_api.settings import Settings
from mcp_api.store.store import Store
from mcp_api.store.tables import ApiKey
from sqlalchemy import create_engine, event, update

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def store(data_dir: Path):
    settings = Settings(data_dir=data_dir)
    store = Store(settings.store_url)
    await store.create_schema()
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
def db_path(data_dir: Path) -> Path:
    return data_dir / "secure-agent.db"


class SelectCounter:
    """SELECTs of the api_keys table run by one engine (the only way verify() reaches the store)."""

    def __init__(self, store: Store) -> None:
        self.count = 0
        event.listen(store.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "api_keys" in statement:
            self.count += 1


async def cli(data_dir: Path, *args: str) -> str:
    """Run the real CLI in another process against the same database file."""
    env = {**os.environ, "SECURE_AGENT_DATA_DIR": str(data_dir)}
    done = await anyio.run_process([sys.executable, "-m", "mcp_api", *args], env=env, check=True)
    return done.stdout.decode()


async def warm(keys: ApiKeyService, key: str, selects: SelectCounter) -> None:
    """Fill the cache and prove the next check is a hit (no SELECT)."""
    assert await keys.verify(key) is not None
    before = selects.count
    assert await keys.verify(key) is not None
    assert await keys.verify(key) is not None
    assert selects.count == before, "a warm check ran a SELECT"


def other_engine(db_path: Path):
    """A separate SQLAlchemy engine on the same file: another connection, as another process has."""
    return create_engine(f"sqlite:///{db_path}")


def test_on_by_default_for_sqlite_files_only(tmp_path: Path):
    assert Settings().api_key_cache_exact is True
    assert _DataVersion.for_url(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}") is not None
    assert _DataVersion.for_url("sqlite+aiosqlite:///:memory:") is None
    assert _DataVersion.for_url("sqlite+aiosqlite://") is None
    assert _DataVersion.for_url("sqlite+aiosqlite:///file:x.db?mode=memory&uri=true") is None
    assert _DataVersion.for_url("postgresql+asyncpg://u:p@db/secure_agent") is None


async def test_the_kill_switch_reaches_the_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SECURE_AGENT_API_KEY_CACHE_EXACT", "false")
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.api_key_cache_exact is False
    services = build_services(settings)
    assert services.keys._data_version is None
    await services.aclose()
    monkeypatch.delenv("SECURE_AGENT_API_KEY_CACHE_EXACT")
    services = build_services(Settings(data_dir=tmp_path / "data"))
    assert services.keys._data_version is not None
    await services.aclose()
    # Other stores: per-request SELECT (or the opt-in TTL) as before.
    pg_store = SimpleNamespace(url="postgresql+asyncpg://u:p@db/secure_agent")
    assert ApiKeyService(pg_store, cache_exact=True)._data_version is None  # type: ignore[arg-type]


async def test_warm_checks_do_no_select_and_the_kill_switch_restores_them(store: Store):
    selects = SelectCounter(store)
    keys = ApiKeyService(store)
    key, _ = await keys.create("acme", "k", ["files:read"])
    await warm(keys, key, selects)
    before = selects.count
    for _ in range(50):
        assert (await keys.verify(key)).tenant == "acme"
    assert selects.count == before

    off = ApiKeyService(store, cache_exact=False)
    before = selects.count
    for _ in range(5):
        assert await off.verify(key) is not None
    assert selects.count == before + 5  # one SELECT per check, as before the cache


async def test_revocation_by_another_process_is_refused_on_the_very_next_check(
    store: Store, data_dir: Path, db_path: Path
):
    selects = SelectCounter(store)
    keys = ApiKeyService(store)
    key, info = await keys.create("acme", "k", ["files:read"])
    await warm(keys, key, selects)
    await cli(data_dir, "keys", "revoke", info.key_id)
    assert await keys.verify(key) is None  # no waiting, no TTL: the first check after the revocation

    # The same through a separate SQLAlchemy connection (no CLI, no audit record: only the key's row).
    key2, info2 = await keys.create("acme", "k2", ["files:read"])
    await warm(keys, key2, selects)
    engine = other_engine(db_path)
    with engine.begin() as conn:
        conn.execute(update(ApiKey).where(ApiKey.key_id == info2.key_id).values(revoked_at=datetime.now(UTC)))
    engine.dispose()
    assert await keys.verify(key2) is None


async def test_rotation_by_another_process_ends_the_old_key_at_its_new_expiry(store: Store, data_dir: Path):
    selects = SelectCounter(store)
    keys = ApiKeyService(store)
    key, info = await keys.create("acme", "k", ["files:read"])
    await warm(keys, key, selects)
    # Another process rotates with a grace period: the old key gets an expiry this process must learn.
    await cli(data_dir, "keys", "rotate", info.key_id, "--grace", "2s")
    before = selects.count
    assert await keys.verify(key) is not None  # still inside the grace period, but asked the store
    assert selects.count == before + 1
    assert keys._cache[info.key_id][4] is not None  # the entry now knows the expiry
    assert await keys.verify(key) is not None  # a hit again (nothing committed since)
    assert selects.count == before + 1
    expiry = keys._cache[info.key_id][4]
    await anyio.sleep(max(0.0, expiry - datetime.now(UTC).timestamp()) + 0.05)
    # No commit since the entry was filled: only its expiry refuses the key (at once, not a TTL later).
    assert await keys.verify(key) is None

    key2, info2 = await keys.create("acme", "k2", ["files:read"])
    await warm(keys, key2, selects)
    await cli(data_dir, "keys", "rotate", info2.key_id)  # no grace: revoked now
    assert await keys.verify(key2) is None


async def test_an_expiry_moved_into_the_past_elsewhere_is_seen_at_once(store: Store, db_path: Path):
    selects = SelectCounter(store)
    keys = ApiKeyService(store)
    key, info = await keys.create("acme", "k", ["files:read"])
    await warm(keys, key, selects)
    engine = other_engine(db_path)
    with engine.begin() as conn:
        past = datetime.now(UTC) - timedelta(seconds=1)
        conn.execute(update(ApiKey).where(ApiKey.key_id == info.key_id).values(expires_at=past))
    engine.dispose()
    assert await keys.verify(key) is None


async def test_tenant_erasure_by_another_process_is_refused_on_the_very_next_check(
    store: Store, data_dir: Path
):
    selects = SelectCounter(store)
    keys = ApiKeyService(store)
    key, _ = await keys.create("beta", "k", ["files:read"])
    await warm(keys, key, selects)
    await cli(data_dir, "tenant", "erase", "beta", "--yes")
    assert await keys.verify(key) is None


async def test_the_same_key_id_with_another_secret_never_matches(store: Store, db_path: Path):
    selects = SelectCounter(store)
    keys = ApiKeyService(store)
    key, info = await keys.create("acme", "k", ["files:read"])
    await warm(keys, key, selects)

    # A forged secret for a cached key id goes to the store (no hit) and is refused.
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    before = selects.count
    assert await keys.verify(forged) is None
    assert selects.count == before + 1
    assert await keys.verify(key) is not None  # the failure cached nothing, the entry still stands

    # Elsewhere the key id gets a new secret (same row): the old key is refused at once, the new works.
    new_key = f"sa_{info.key_id}_{'n' * 43}"
    salt = "f" * 32
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute(
            "UPDATE api_keys SET salt = ?, secret_hash = ? WHERE key_id = ?",
            (salt, _hash(salt, "n" * 43), info.key_id),
        )
    raw.close()
    assert await keys.verify(key) is None
    assert (await keys.verify(new_key)).key_id == info.key_id
    before = selects.count
    assert await keys.verify(new_key) is not None  # now cached under the new secret
    assert selects.count == before
    assert await keys.verify(key) is None


async def test_an_unrelated_commit_is_a_miss_but_the_key_still_verifies(store: Store, db_path: Path):
    selects = SelectCounter(store)
    keys = ApiKeyService(store)
    key, _ = await keys.create("acme", "k", ["files:read"])
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute("CREATE TABLE scratch (x INTEGER)")
    await warm(keys, key, selects)
    for commits in range(1, 4):
        with raw:
            raw.execute("INSERT INTO scratch VALUES (?)", (commits,))
        before = selects.count
        assert await keys.verify(key) is not None
        assert selects.count == before + 1  # any commit: the entry is no longer trusted
        assert await keys.verify(key) is not None
        assert selects.count == before + 1  # and the refilled entry is
    raw.close()
    # A commit through this process's own engine (another key's creation) counts too.
    await ApiKeyService(store).create("acme", "k2", ["files:read"])
    before = selects.count
    assert await keys.verify(key) is not None
    assert selects.count == before + 1


async def test_a_commit_racing_with_the_lookup_leaves_no_fresh_looking_entry(store: Store, db_path: Path):
    """data_version is read before the SELECT: a revocation committed after the SELECT read the row
    (so this check legitimately accepts the key) must not let the next check accept it."""
    keys = ApiKeyService(store)
    key, info = await keys.create("acme", "k", ["files:read"])
    real_select = keys._select

    async def select_then_revoke_elsewhere(key_id: str):
        row = await real_select(key_id)
        engine = other_engine(db_path)
        with engine.begin() as conn:
            conn.execute(update(ApiKey).where(ApiKey.key_id == key_id).values(revoked_at=datetime.now(UTC)))
        engine.dispose()
        return row

    keys._select = select_then_revoke_elsewhere  # type: ignore[method-assign]
    assert await keys.verify(key) is not None  # its SELECT saw the key before the revocation
    keys._select = real_select  # type: ignore[method-assign]
    assert info.key_id in keys._cache
    assert await keys.verify(key) is None


async def test_a_local_revocation_racing_with_a_lookup_is_not_undone_by_the_ttl_cache(store: Store):
    """The same race against this process's own revoke(), with the TTL cache (no data_version)."""
    keys = ApiKeyService(store, cache_ttl_s=60, cache_exact=False)
    key, info = await keys.create("acme", "k", ["files:read"])
    real_select = keys._select
    selected = asyncio.Event()
    revoked = asyncio.Event()

    async def slow_select(key_id: str):
        row = await real_select(key_id)
        selected.set()
        await revoked.wait()
        return row

    keys._select = slow_select  # type: ignore[method-assign]
    check = asyncio.ensure_future(keys.verify(key))
    await selected.wait()
    await keys.revoke(info.key_id)
    revoked.set()
    assert await check is not None  # asked before the revocation
    keys._select = real_select  # type: ignore[method-assign]
    assert info.key_id not in keys._cache
    assert await keys.verify(key) is None


async def test_a_failing_data_version_read_falls_back_to_the_select(store: Store):
    selects = SelectCounter(store)
    keys = ApiKeyService(store)
    key, info = await keys.create("acme", "k", ["files:read"])
    await warm(keys, key, selects)
    dv = keys._data_version
    assert dv is not None

    class LockedCursor:
        def execute(self, *_args):
            raise sqlite3.OperationalError("database is locked")

    serial = dv._serial
    dv._cursor = LockedCursor()  # type: ignore[assignment]
    before = selects.count
    assert await keys.verify(key) is not None  # no hit: the PRAGMA failed, the store answered
    assert selects.count == before + 1
    assert dv._serial == serial + 1  # reopened for the lookup, so its entry has the new connection's token
    assert await keys.verify(key) is not None
    assert selects.count == before + 1  # hits again on the new connection

    # Cannot open at all (file gone, unreadable): every check asks the store, and gets it right.
    dv._uri = (Path(store.url.split("///", 1)[1]).parent / "missing.db").as_uri() + "?mode=ro"
    dv.close()
    before = selects.count
    for _ in range(3):
        assert await keys.verify(key) is not None
    assert selects.count == before + 3
    await ApiKeyService(store).revoke(info.key_id)
    assert await keys.verify(key) is None


async def test_a_value_from_an_old_connection_never_matches_a_new_one(store: Store):
    keys = ApiKeyService(store)
    dv = keys._data_version
    first = dv.read()
    dv.close()
    second = dv.read()
    assert first is not None and second is not None
    assert first != second  # the raw numbers may coincide, the tokens never do


async def test_local_revoke_rotate_and_erasure_drop_entries(store: Store):
    selects = SelectCounter(store)
    keys = ApiKeyService(store)
    a, a_info = await keys.create("acme", "a", ["files:read"])
    b, b_info = await keys.create("acme", "b", ["files:read"])
    c, _ = await keys.create("beta", "c", ["files:read"])
    for key in (a, b, c):
        await warm(keys, key, selects)
    await keys.revoke(a_info.key_id)
    assert a_info.key_id not in keys._cache
    await keys.rotate(b_info.key_id)
    assert b_info.key_id not in keys._cache
    await keys.delete_tenant("beta")
    assert not keys._cache
    assert [await keys.verify(k) for k in (a, b, c)] == [None, None, None]


async def test_the_cache_is_bounded(store: Store, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(api_keys, "MAX_CACHED_KEYS", 3)
    keys = ApiKeyService(store)
    created = [await keys.create("acme", f"k{i}", ["files:read"]) for i in range(6)]
    for key, _ in created:
        assert await keys.verify(key) is not None
        assert len(keys._cache) <= 3
    assert all([await keys.verify(key) is not None for key, _ in created])


async def test_close_releases_the_connection_and_a_later_check_reopens_it(store: Store):
    keys = ApiKeyService(store)
    key, _ = await keys.create("acme", "k", ["files:read"])
    assert await keys.verify(key) is not None
    assert keys._data_version._cursor is not None
    keys.close()
    assert keys._data_version._cursor is None
    assert await keys.verify(key) is not None
    keys.close()
