"""Token-bucket rate limits: per API key (or OAuth subject), per tenant, and per client IP for
unauthenticated traffic; plus a per-tenant cap on tool calls in flight (the tenant's AgentProfile
`quotas.maxInflightToolCalls` when it writes one, else `max_inflight_tool_calls_per_tenant`).

Buckets live in this process by default. With `SECURE_AGENT_REDIS_URL` they live in Redis and one
Lua script checks and takes from every bucket of a request atomically (using Redis' clock, so
replicas with skewed clocks agree): the limits then hold across all workers and replicas. If Redis
cannot be reached the limiter falls back to its local buckets (logged, and retried after a pause)
rather than failing every request: rate limiting must not become the outage.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..observability.metrics import RATE_LIMITED
from .config import RateLimitSettings

log = logging.getLogger(__name__)

# JSON-RPC error code of a 429 (server-defined range); `data.retryAfter` repeats the header.
RATE_LIMITED_CODE = -32029
MAX_LOCAL_BUCKETS = 100_000
REDIS_RETRY_AFTER_S = 5.0


@dataclass(frozen=True)
class Bucket:
    """One token bucket: `kind` is the metric label (key, tenant, ip)."""

    kind: str
    name: str
    rate: float  # tokens per second
    burst: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0
    limit: str | None = None  # the bucket kind that refused

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


class LocalBuckets:
    """In-process buckets (bounded: the least recently used are forgotten, which only forgives)."""

    def __init__(self, clock=time.monotonic, max_buckets: int = MAX_LOCAL_BUCKETS) -> None:
        self._clock = clock
        self._max = max_buckets
        self._state: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    def take(self, buckets: list[Bucket], cost: float = 1.0) -> Decision:
        now = self._clock()
        levels: list[float] = []
        refused: Decision | None = None
        for bucket in buckets:
            tokens, stamp = self._state.get((bucket.kind, bucket.name), (float(bucket.burst), now))
            tokens = min(float(bucket.burst), tokens + (now - stamp) * bucket.rate)
            levels.append(tokens)
            if tokens < cost and refused is None:
                refused = Decision(False, (cost - tokens) / bucket.rate, bucket.kind)
        for bucket, tokens in zip(buckets, levels, strict=True):
            key = (bucket.kind, bucket.name)
            self._state[key] = (tokens if refused else tokens - cost, now)
            self._state.move_to_end(key)
        while len(self._state) > self._max:
            self._state.popitem(last=False)
        return refused or Decision(True)


# KEYS: bucket keys. ARGV: cost, then rate and burst of each bucket. Returns {allowed, retry, index}.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost = tonumber(ARGV[1])
local levels = {}
local refused = 0
local retry = 0
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or burst
  local ts = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  levels[i] = tokens
  if tokens < cost and refused == 0 then
    refused = i
    retry = (cost - tokens) / rate
  end
end
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local tokens = levels[i]
  if refused == 0 then tokens = tokens - cost end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
return {refused == 0 and 1 or 0, tostring(retry), refused}
"""


class RedisBuckets:
    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as redis

        # A blocking pool: a burst of requests waits briefly for a connection instead of failing.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=1.0, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self._pool = pool
        self._redis = redis.Redis(connection_pool=pool)
        self._script = self._redis.register_script(_LUA)
        self._prefix = prefix

    async def take(self, buckets: list[Bucket], cost: float = 1.0) -> Decision:
        keys = [f"{self._prefix}{b.kind}:{b.name}" for b in buckets]
        args: list[float | int] = [cost]
        for bucket in buckets:
            args += [bucket.rate, bucket.burst]
        allowed, retry, index = await self._script(keys=keys, args=args)
        if int(allowed):
            return Decision(True)
        return Decision(False, float(retry), buckets[int(index) - 1].kind)

    async def ping(self) -> None:
        await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()
        await self._pool.disconnect()


class RateLimiter:
    def __init__(
        self,
        settings: RateLimitSettings,
        redis_url: str | None = None,
        *,
        inflight_cap_for: Callable[[str], int] | None = None,
    ) -> None:
        self.settings = settings
        # tenant -> its in-flight cap (its AgentProfile's quotas.maxInflightToolCalls, else the
        # setting); read at every call, so a changed profile applies to the next call.
        self.inflight_cap_for = inflight_cap_for
        self.local = LocalBuckets()
        self.redis = RedisBuckets(redis_url, settings.redis_prefix) if redis_url else None
        self._redis_down_until = 0.0
        self._inflight: dict[str, int] = {}

    @property
    def backend(self) -> str:
        return "redis" if self.redis else "local"

    def principal_buckets(self, tenant: str, key_id: str) -> list[Bucket]:
        s = self.settings
        buckets = []
        if s.key_per_s > 0:
            buckets.append(Bucket("key", f"{tenant}/{key_id}", s.key_per_s, s.key_burst))
        if s.tenant_per_s > 0:
            buckets.append(Bucket("tenant", tenant, s.tenant_per_s, s.tenant_burst))
        return buckets

    def ip_buckets(self, ip: str) -> list[Bucket]:
        s = self.settings
        return [Bucket("ip", ip, s.ip_per_s, s.ip_burst)] if s.ip_per_s > 0 else []

    async def check_principal(self, tenant: str, key_id: str) -> Decision:
        return await self._take(self.principal_buckets(tenant, key_id))

    async def check_ip(self, ip: str) -> Decision:
        return await self._take(self.ip_buckets(ip))

    async def _take(self, buckets: list[Bucket]) -> Decision:
        if not self.settings.enabled or not buckets:
            return Decision(True)
        decision: Decision | None = None
        if self.redis is not None and time.monotonic() >= self._redis_down_until:
            try:
                decision = await self.redis.take(buckets)
            except Exception as exc:  # any Redis/network error: degrade to local buckets, never fail requests
                self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER_S
                log.warning("rate limiter: Redis unavailable, using local buckets for %ss: %s",
                            REDIS_RETRY_AFTER_S, exc)  # fmt: skip
        if decision is None:
            decision = self.local.take(buckets)
        if not decision.allowed:
            RATE_LIMITED.labels(limit=decision.limit).inc()
        return decision

    @asynccontextmanager
    async def tool_call_slot(self, tenant: str) -> AsyncIterator[None]:
        """Hold one of the tenant's in-flight tool call slots; raises TooManyInFlight when none is free."""
        cap = self.inflight_cap(tenant)
        if not self.settings.enabled or cap <= 0:
            yield
            return
        current = self._inflight.get(tenant, 0)
        if current >= cap:
            RATE_LIMITED.labels(limit="tenant").inc()
            raise TooManyInFlight(cap)
        self._inflight[tenant] = current + 1
        try:
            yield
        finally:
            left = self._inflight[tenant] - 1
            if left:
                self._inflight[tenant] = left
            else:
                del self._inflight[tenant]

    def inflight_cap(self, tenant: str) -> int:
        """The tenant's cap on tool calls in flight (0: none): its profile's, else the setting."""
        if self.inflight_cap_for is not None:
            try:
                return self.inflight_cap_for(tenant)
            except Exception as exc:  # profile resolution must not fail the call: the setting applies
                log.warning("in-flight cap of tenant %r from its profile failed: %s", tenant, exc)
        return self.settings.max_inflight_tool_calls_per_tenant

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


class TooManyInFlight(Exception):
    def __init__(self, cap: int) -> None:
        super().__init__(
            f"too many tool calls in flight for this tenant (at most {cap} at once); wait for one to "
            "finish and retry"
        )
        self.cap = cap


def rate_limited_body(decision: Decision) -> dict:
    what = {
        "key": "this API key",
        "tenant": "this tenant",
        "ip": "unauthenticated requests from this address",
    }
    return {
        "jsonrpc": "2.0",
        "id": None,
        "error": {
            "code": RATE_LIMITED_CODE,
            "message": f"Rate limit exceeded for {what.get(decision.limit or '', 'this client')}; "
            f"retry after {decision.retry_after_header} s.",
            "data": {"retryAfter": int(decision.retry_after_header), "limit": decision.limit},
        },
    }


async def send_rate_limited(send, decision: Decision) -> None:
    """HTTP 429 with Retry-After and a JSON-RPC error body the client can show."""
    body = json.dumps(rate_limited_body(decision)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", decision.retry_after_header.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
