"""Rate limits: token buckets per key, tenant and IP, 429 answers, in-flight caps, and Redis shared
by two server processes."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from mcp_api.app import create_app
from mcp_api.security.config import RateLimitSettings
from mcp_api.security.rate_limit import Bucket, LocalBuckets, RateLimiter, RedisBuckets
from mcp_api.settings import Settings
from mcp_helpers import TEST_KEY, Mcp

pytestmark = pytest.mark.anyio


def test_local_bucket_refills_and_refuses_with_retry_after():
    now = [0.0]
    buckets = LocalBuckets(clock=lambda: now[0])
    bucket = [Bucket("key", "t/k", rate=2.0, burst=3)]
    assert [buckets.take(bucket).allowed for _ in range(4)] == [True, True, True, False]
    refused = buckets.take(bucket)
    assert refused.limit == "key" and refused.retry_after == pytest.approx(0.5)
    assert refused.retry_after_header == "1"
    now[0] = 0.5
    assert buckets.take(bucket).allowed and not buckets.take(bucket).allowed


def test_a_refusal_takes_from_no_bucket():
    buckets = LocalBuckets(clock=lambda: 0.0)
    key, tenant = Bucket("key", "a", 1.0, 5), Bucket("tenant", "t", 1.0, 2)
    assert buckets.take([key, tenant]).allowed and buckets.take([key, tenant]).allowed
    assert buckets.take([key, tenant]).limit == "tenant"
    # The key bucket was not charged for the refused request: 3 left of 5.
    assert [buckets.take([key]).allowed for _ in range(4)] == [True, True, True, False]


def test_local_buckets_are_bounded():
    buckets = LocalBuckets(clock=lambda: 0.0, max_buckets=100)
    for i in range(1000):
        buckets.take([Bucket("ip", str(i), 1.0, 1)])
    assert len(buckets._state) == 100


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", dev_api_key=TEST_KEY,
        rate_limits={"key_per_s": 0.5, "key_burst": 5, "tenant_per_s": 0.5, "tenant_burst": 8,
                     "ip_per_s": 0.5, "ip_burst": 4},
    )  # fmt: skip


async def test_key_limit_answers_429_with_retry_after_and_a_jsonrpc_error(app, http):
    client = Mcp(http=http)
    statuses = [(await client.post("tools/list")).status_code for _ in range(7)]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429, 429]
    refused = await client.post("tools/list")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    error = refused.json()["error"]
    assert error["code"] == -32029 and error["data"]["limit"] == "key" and "retry after" in error["message"]
    metrics = (await http.get("/metrics")).text
    assert 'secure_agent_rate_limited_total{limit="key"} 3.0' in metrics


async def test_tenant_limit_spans_the_tenants_keys(app, http):
    second, _ = await app.state.services.keys.create("dev", "second", ["files:read"])
    first = Mcp(http=http)
    other = Mcp(http=http, key=second)
    results = []
    for _ in range(5):
        results.append((await first.post("tools/list")).status_code)
        results.append((await other.post("tools/list")).status_code)
    assert results.count(200) == 8  # the tenant's bucket (8), not 2 x the key bucket (10)
    refused = await other.post("tools/list")
    assert refused.json()["error"]["data"]["limit"] == "tenant"
    # Another tenant is not affected.
    outsider, _ = await app.state.services.keys.create("other", "o", ["files:read"])
    assert (await Mcp(http=http, key=outsider).post("tools/list")).status_code == 200


async def test_unauthenticated_requests_are_limited_per_client_ip(app, http):
    anonymous = Mcp(http=http, key="sa_wrongkey0000_" + "x" * 30)
    statuses = [(await anonymous.post("tools/list")).status_code for _ in range(6)]
    assert statuses == [401] * 4 + [429] * 2
    # A valid key from the same address still works: authenticated traffic has its own buckets.
    assert (await Mcp(http=http).post("tools/list")).status_code == 200


async def test_client_ip_comes_from_trusted_proxies_only(tmp_path):
    settings = Settings(data_dir=tmp_path / "d", dev_api_key=TEST_KEY, trusted_proxies=["10.0.0.0/8"],
                        rate_limits={"ip_per_s": 0.1, "ip_burst": 1})  # fmt: skip
    app = create_app(settings)

    async def status(peer: str, forwarded: str | None) -> int:
        transport = httpx.ASGITransport(app=app, client=(peer, 1234))
        headers = {"content-type": "application/json"} | ({"x-forwarded-for": forwarded} if forwarded else {})
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as client:
            return (await client.post("/mcp", json={}, headers=headers)).status_code

    async with app.router.lifespan_context(app):
        # Through the trusted proxy, each real client has its own bucket ...
        assert await status("10.1.1.1", "203.0.113.5") == 401
        assert await status("10.1.1.1", "203.0.113.6") == 401
        assert await status("10.1.1.1", "203.0.113.5, 10.2.2.2") == 429  # same client, two proxies
        # ... and a client talking directly cannot pick its bucket by forging the header.
        assert await status("198.51.100.7", "203.0.113.99") == 401
        assert await status("198.51.100.7", "203.0.113.100") == 429


async def test_in_flight_tool_calls_are_capped_per_tenant():
    limiter = RateLimiter(RateLimitSettings(max_inflight_tool_calls_per_tenant=2))
    release = asyncio.Event()
    entered = []

    async def call(tenant: str):
        async with limiter.tool_call_slot(tenant):
            entered.append(tenant)
            await release.wait()

    tasks = [asyncio.create_task(call("a")) for _ in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(Exception, match="too many tool calls in flight"):
        await call("a")
    other = asyncio.create_task(call("b"))  # other tenants are unaffected
    await asyncio.sleep(0.01)
    assert entered == ["a", "a", "b"]
    release.set()
    await asyncio.gather(*tasks, other)
    assert limiter._inflight == {}
    async with limiter.tool_call_slot("a"):  # slots come back
        pass


async def test_in_flight_cap_reaches_tool_results(app, http, workspace, monkeypatch):
    (workspace / "f.txt").write_text("x")
    limiter = app.state.services.limiter
    monkeypatch.setattr(limiter.settings, "max_inflight_tool_calls_per_tenant", 1)
    limiter._inflight["dev"] = 1  # one call of this tenant is already running
    result = await Mcp(http=http).call("read_file", path="f.txt")
    assert result["isError"] and "too many tool calls in flight" in result["content"][0]["text"]


async def test_redis_buckets_are_atomic_under_concurrency(redis_url):
    buckets = RedisBuckets(redis_url, "test:atomic:")
    bucket = [Bucket("key", "k", rate=0.001, burst=50)]
    decisions = await asyncio.gather(*(buckets.take(bucket) for _ in range(200)))
    assert sum(d.allowed for d in decisions) == 50
    refused = next(d for d in decisions if not d.allowed)
    assert refused.limit == "key" and refused.retry_after > 0
    await buckets.aclose()


async def test_redis_outage_falls_back_to_local_buckets():
    limiter = RateLimiter(RateLimitSettings(key_burst=2, key_per_s=0.01), "redis://127.0.0.1:1/0")
    decisions = [await limiter.check_principal("t", "k") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    await limiter.aclose()


@pytest.mark.integration
def test_two_server_processes_share_one_limit_through_redis(server_factory, redis_url):
    env = {
        "SECURE_AGENT_REDIS_URL": redis_url,
        "SECURE_AGENT_RATE_LIMITS__KEY_PER_S": "0.01",
        "SECURE_AGENT_RATE_LIMITS__KEY_BURST": "10",
        "SECURE_AGENT_RATE_LIMITS__REDIS_PREFIX": "test:two-servers:",
    }
    first = server_factory(env)
    second = server_factory(env)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"authorization": f"Bearer {first.api_key}", "content-type": "application/json",
               "accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}  # fmt: skip
    statuses = []
    for i in range(16):  # alternate: each process alone would allow 10
        server = (first, second)[i % 2]
        statuses.append(httpx.post(f"{server.url}", json=body, headers=headers, timeout=10).status_code)
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 6, statuses
    refused = httpx.post(second.url, json=body, headers=headers, timeout=10)
    assert refused.status_code == 429 and refused.headers["retry-after"]
