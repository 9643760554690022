"""The API-key verification cache: bounded staleness across processes, none within one.

By default every check asks the store (concurrent checks of one key share a lookup that started after
each of them arrived), so revocation is immediate everywhere (also auth/test_tool_matrix.py). Opt-in,
a verified key is trusted for `api_key_cache_ttl_s` without a store round trip: revocation by the same
ApiKeyService is still immediate; revocation by another process (the CLI here, a real second process
on the same store) takes effect within the TTL.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest
from mcp_api.auth.api_keys import ApiKeyService
from mcp_api.settings import Settings
from mcp_api.store.store import Store

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
TTL = 1.0


@pytest.fixture
async def store(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.store_url)
    await store.create_schema()
    try:
        yield store
    finally:
        await store.aclose()


def test_the_server_default_checks_the_store_on_every_request():
    assert Settings().api_key_cache_ttl_s == 0  # the TTL cache is opt-in


async def test_concurrent_checks_of_one_key_share_lookups_each_started_after_the_request(store: Store):
    keys = ApiKeyService(store)  # no TTL: the default
    key, info = await keys.create("acme", "k", ["files:read"])
    real_select = keys._select
    started: list[float] = []

    async def slow_select(key_id: str):
        started.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.05)
        return await real_select(key_id)

    keys._select = slow_select  # type: ignore[method-assign]
    principals = await asyncio.gather(*(keys.verify(key) for _ in range(20)))
    assert all(p is not None and p.key_id == info.key_id for p in principals)
    assert len(started) <= 2  # one lookup running, the rest shared the next one
    assert not keys._flights

    # A check that arrives while a lookup is running never gets that (older) lookup's answer.
    first = asyncio.ensure_future(keys.verify(key))
    await asyncio.sleep(0.01)  # its lookup is running now
    await ApiKeyService(store).revoke(info.key_id)  # as another process would
    second = await keys.verify(key)
    assert second is None
    await first  # may still see the key: it asked before the revocation


async def test_a_failed_lookup_fails_its_waiters_and_the_next_check_asks_again(store: Store):
    keys = ApiKeyService(store)
    key, _ = await keys.create("acme", "k", ["files:read"])
    real_select = keys._select
    calls = 0

    async def flaky_select(key_id: str):
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        if calls == 1:
            raise RuntimeError("store down")
        return await real_select(key_id)

    keys._select = flaky_select  # type: ignore[method-assign]
    results = await asyncio.gather(keys.verify(key), keys.verify(key), return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert await keys.verify(key) is not None


async def test_cache_hits_skip_the_store_and_a_wrong_secret_never_matches(store: Store):
    keys = ApiKeyService(store, cache_ttl_s=60)
    key, info = await keys.create("acme", "k", ["files:read"])
    assert (await keys.verify(key)).tenant == "acme"

    def store_asked():
        raise AssertionError("store asked")

    keys._store = SimpleNamespace(engine=SimpleNamespace(connect=store_asked))  # type: ignore[assignment]
    assert (await keys.verify(key)).key_id == info.key_id  # from the cache
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with pytest.raises(AssertionError, match="store asked"):
        await keys.verify(forged)  # same key id, another secret: never a cache hit


async def test_revocation_in_another_process_takes_effect_within_the_ttl(store: Store, tmp_path: Path):
    keys = ApiKeyService(store, cache_ttl_s=TTL)
    key, info = await keys.create("acme", "k", ["files:read"])
    assert await keys.verify(key) is not None  # now cached in this process
    env = {**os.environ, "SECURE_AGENT_DATA_DIR": str(tmp_path / "data")}
    revoked_at = time.monotonic()
    await anyio.run_process(
        [sys.executable, "-m", "mcp_api", "keys", "revoke", info.key_id], env=env, check=True
    )
    # Another process revoked it: this one may still accept it, but never for longer than the TTL.
    while await keys.verify(key) is not None:
        assert time.monotonic() - revoked_at < TTL + 0.5, "revoked key still accepted after the TTL"
        await anyio.sleep(0.05)
    assert await ApiKeyService(store, cache_ttl_s=TTL).verify(key) is None
    # Failures are not cached: a fresh key of the same process works at once.
    key2, _ = await keys.create("acme", "k2", ["files:read"])
    assert await keys.verify(key2) is not None


async def test_revoke_and_erasure_in_this_process_are_immediate(store: Store):
    keys = ApiKeyService(store, cache_ttl_s=60)
    key, info = await keys.create("acme", "k", ["files:read"])
    other, _ = await keys.create("beta", "k", ["files:read"])
    assert await keys.verify(key) and await keys.verify(other)
    await keys.revoke(info.key_id)
    assert await keys.verify(key) is None
    await keys.delete_tenant("beta")
    assert await keys.verify(other) is None


async def test_ttl_zero_asks_the_store_every_time(store: Store):
    keys = ApiKeyService(store, cache_ttl_s=0)
    key, info = await keys.create("acme", "k", ["files:read"])
    assert await keys.verify(key) is not None
    await ApiKeyService(store).revoke(info.key_id)  # another service instance: no shared cache
    assert await keys.verify(key) is None
