"""API keys: `sa_<key_id>_<secret>`, stored as a salted SHA-256 of the secret, never in clear.

The secret carries 256 bits of randomness, so a fast salted hash is enough (slow KDFs only help
against guessable passwords) and keeps verification cheap on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select

from ..security.audit import AuditLog
from ..store.store import Store
from ..store.tables import ApiKey
from .principal import TENANT_RE, Principal
from .scopes import parse_scopes

KEY_RE = re.compile(r"^sa_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{20,128})$")
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# Every request is checked against the store by default, so a revoked or erased key is refused at once
# by every process and replica; concurrent checks of the same key share one lookup (`_fresh_row`),
# each still answered by a SELECT that started after the request arrived. Opt-in (settings
# `api_key_cache_ttl_s` > 0): a verified key is trusted that long without a lookup; a revocation then
# reaches this process at once but other processes only within the TTL. What a cache entry trusts: the
# key id maps to the SHA-256 of the whole presented key and the principal (tenant, scopes) the store
# returned; another secret for the same key id never matches it and goes to the store. Failures are
# never cached. A key with an expiry (`rotate` with a grace period) is never cached past it, so it is
# refused from its expiry on even while cached; a later change of the expiry by another process (a
# rotation there) reaches this one within the TTL, like a revocation.
CACHE_TTL_S = 0.0
MAX_CACHED_KEYS = 10_000
_VERIFY_QUERY = select(
    ApiKey.key_id, ApiKey.tenant, ApiKey.salt, ApiKey.secret_hash, ApiKey.scopes, ApiKey.revoked_at,
    ApiKey.expires_at,
).where(ApiKey.key_id == bindparam("key_id"))  # fmt: skip


class _Flight:
    """The store lookup of one key id running now, and the one that will start after it."""

    __slots__ = ("running", "pending", "task")

    def __init__(self) -> None:
        self.running: asyncio.Future | None = None
        self.pending: asyncio.Future | None = None
        self.task: asyncio.Task | None = None


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # marks it retrieved: waiters may all have gone


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    tenant: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None and not _expired(self.expires_at)


def _utc(at: datetime | None) -> datetime | None:
    # SQLite hands DateTime(timezone=True) back naive; everything is stored in UTC.
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def _expired(expires_at: datetime | None, now: datetime | None = None) -> bool:
    return expires_at is not None and _utc(expires_at) <= (now or datetime.now(UTC))


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def generate_key() -> str:
    key_id = "".join(secrets.choice(_ALNUM) for _ in range(12))
    return f"sa_{key_id}_{secrets.token_urlsafe(32)}"


def validate_tenant(tenant: str) -> str:
    if not TENANT_RE.match(tenant):
        raise ValueError(
            f"tenant {tenant!r} is invalid: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return tenant


class ApiKeyService:
    def __init__(self, store: Store, audit: AuditLog | None = None, cache_ttl_s: float = CACHE_TTL_S) -> None:
        self._store = store
        # Every key change is audited, whichever path made it (CLI, first start, an admin API).
        self.audit = audit or AuditLog(store)
        self._cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, str, Principal]] = {}
        self._flights: dict[str, _Flight] = {}

    async def create(
        self,
        tenant: str,
        name: str,
        scopes: list[str] | tuple[str, ...],
        *,
        key: str | None = None,
        actor: str = "system",
    ) -> tuple[str, KeyInfo]:
        """Create a key and return it in clear together with its record; the clear key is not kept."""
        validate_tenant(tenant)
        parsed_scopes = parse_scopes(scopes)
        if not parsed_scopes:
            raise ValueError("a key needs at least one scope")
        key = key or generate_key()
        match = KEY_RE.match(key)
        if not match:
            raise ValueError("API key must look like sa_<12 letters or digits>_<20-128 url-safe characters>")
        key_id, secret = match.groups()
        salt = secrets.token_hex(16)
        row = ApiKey(
            key_id=key_id,
            tenant=tenant,
            name=name[:128],
            salt=salt,
            secret_hash=_hash(salt, secret),
            scopes=" ".join(parsed_scopes),
            created_at=datetime.now(UTC),
        )
        async with self._store.session() as session:
            if await session.get(ApiKey, key_id) is not None:
                raise ValueError(f"a key with id {key_id} already exists")
            session.add(row)
            await session.commit()
        await self.audit.record(
            "key.create", actor, tenant, f"key:{key_id}", {"name": row.name, "scopes": row.scopes.split()}
        )
        return key, _info(row)

    async def list(self, tenant: str | None = None) -> list[KeyInfo]:
        query = select(ApiKey).order_by(ApiKey.created_at)
        if tenant:
            query = query.where(ApiKey.tenant == tenant)
        async with self._store.session() as session:
            return [_info(row) for row in (await session.scalars(query)).all()]

    async def revoke(self, key_id: str, *, actor: str = "system") -> KeyInfo:
        changed = False
        async with self._store.session() as session:
            row = await session.get(ApiKey, key_id)
            if row is None:
                raise KeyError(f"no API key with id {key_id!r}; see 'secure-agent keys list'")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
                await session.commit()
                changed = True
        self._cache.pop(key_id, None)
        if changed:
            await self.audit.record("key.revoke", actor, row.tenant, f"key:{key_id}", {"name": row.name})
        return _info(row)

    async def rotate(
        self, key_id: str, *, grace_s: float = 0.0, actor: str = "system"
    ) -> tuple[str, KeyInfo, KeyInfo]:
        """Replace a key with a new one of the same tenant, name and scopes, in one transaction; the old
        key is revoked at once (`grace_s` 0) or expires `grace_s` seconds from now (an earlier expiry
        stays). Returns the new key in clear, its record and the old key's. Unknown key: KeyError;
        revoked or expired key: ValueError; either way nothing changes."""
        if grace_s < 0:
            raise ValueError("the grace period cannot be negative")
        key = generate_key()
        new_id, secret = KEY_RE.match(key).groups()  # type: ignore[union-attr]
        at = datetime.now(UTC)
        async with self._store.session() as session:
            old = await session.get(ApiKey, key_id)
            if old is None:
                raise KeyError(f"no API key with id {key_id!r}; see 'secure-agent keys list'")
            if old.revoked_at is not None:
                raise ValueError(
                    f"key {key_id} was revoked at {_utc(old.revoked_at).isoformat()}: nothing to rotate; "
                    "create a new key with 'secure-agent keys create'"
                )
            if _expired(old.expires_at, at):
                raise ValueError(
                    f"key {key_id} expired at {_utc(old.expires_at).isoformat()}: nothing to rotate; "
                    "create a new key with 'secure-agent keys create'"
                )
            salt = secrets.token_hex(16)
            new = ApiKey(
                key_id=new_id, tenant=old.tenant, name=old.name, salt=salt, secret_hash=_hash(salt, secret),
                scopes=old.scopes, created_at=at,
            )  # fmt: skip
            if grace_s == 0:
                old.revoked_at = at
            else:
                until = at + timedelta(seconds=grace_s)
                old.expires_at = min(_utc(old.expires_at), until) if old.expires_at is not None else until
            session.add(new)
            await session.commit()
        self._cache.pop(key_id, None)
        await self.audit.record(
            "key.create", actor, new.tenant, f"key:{new_id}",
            {"name": new.name, "scopes": new.scopes.split(), "rotated_from": key_id},
        )  # fmt: skip
        ends = old.revoked_at if grace_s == 0 else old.expires_at
        await self.audit.record(
            "key.rotate", actor, old.tenant, f"key:{key_id}",
            {"name": old.name, "rotated_to": new_id, "grace_s": grace_s, "ends_at": _utc(ends).isoformat()},
        )  # fmt: skip
        return key, _info(new), _info(old)

    async def delete_tenant(self, tenant: str) -> int:
        """Remove every key of a tenant (erasure); callers audit the erasure as a whole."""
        async with self._store.session() as session:
            result = await session.execute(delete(ApiKey).where(ApiKey.tenant == tenant))
            await session.commit()
        self._cache = {k: v for k, v in self._cache.items() if v[2].tenant != tenant}
        return result.rowcount or 0

    async def verify(self, key: str) -> Principal | None:
        """The principal for a valid, unrevoked key; None for anything else (no reason leaks out)."""
        match = KEY_RE.match(key)
        if not match:
            return None
        key_id, secret = match.groups()
        cached = self._cache.get(key_id)
        now = time.monotonic()
        if cached and cached[0] > now:
            _, expected_hash_of_key, principal = cached
            if hmac.compare_digest(expected_hash_of_key, hashlib.sha256(key.encode()).hexdigest()):
                return principal
        row = await self._fresh_row(key_id)
        if row is None or row.revoked_at is not None or _expired(row.expires_at):
            return None
        if not hmac.compare_digest(row.secret_hash, _hash(row.salt, secret)):
            return None
        principal = Principal(tenant=row.tenant, key_id=row.key_id, scopes=frozenset(row.scopes.split()))
        ttl = self._cache_ttl_s
        if ttl > 0 and row.expires_at is not None:  # never trusted from the cache past its expiry
            ttl = min(ttl, (_utc(row.expires_at) - datetime.now(UTC)).total_seconds())
        if ttl > 0:
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= MAX_CACHED_KEYS:
                    self._cache.clear()
            self._cache[key_id] = (now + ttl, hashlib.sha256(key.encode()).hexdigest(), principal)
        return principal

    async def _select(self, key_id: str) -> Any:
        # The hot path of every request: one Core SELECT of the columns needed, no ORM session
        # (identity map, unit of work, begin/commit), so fewer store round trips per request.
        async with self._store.engine.connect() as conn:
            return (await conn.execute(_VERIFY_QUERY, {"key_id": key_id})).first()

    async def _fresh_row(self, key_id: str) -> Any:
        """The key's row from a SELECT that started after this call did (so a revocation committed
        before it is always seen), shared by every concurrent call for the same key: a call that
        finds a lookup already running waits for the next one, which starts when that one ends. Under
        load one lookup answers a whole burst of requests; one call at a time costs the same as before.
        """
        flight = self._flights.get(key_id)
        if flight is None:
            flight = self._flights[key_id] = _Flight()
            future = flight.running = asyncio.get_running_loop().create_future()
            flight.task = asyncio.get_running_loop().create_task(self._lookup(key_id, flight, future))
        else:
            if flight.pending is None:
                flight.pending = asyncio.get_running_loop().create_future()
            future = flight.pending
        return await asyncio.shield(future)

    async def _lookup(self, key_id: str, flight: _Flight, future: asyncio.Future) -> None:
        while True:
            try:
                future.set_result(await self._select(key_id))
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter
                future.set_exception(exc)
                future.add_done_callback(_retrieve)
                if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                    if flight.pending is not None:
                        flight.pending.set_exception(exc)
                        flight.pending.add_done_callback(_retrieve)
                    self._flights.pop(key_id, None)
                    raise
            if flight.pending is None:
                self._flights.pop(key_id, None)
                return
            future = flight.running = flight.pending
            flight.pending = None

    async def find(self, key: str) -> KeyInfo | None:
        match = KEY_RE.match(key)
        if not match:
            return None
        async with self._store.session() as session:
            row = await session.get(ApiKey, match.group(1))
        return _info(row) if row else None


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        key_id=row.key_id,
        tenant=row.tenant,
        name=row.name,
        scopes=tuple(row.scopes.split()),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        expires_at=_utc(row.expires_at),
    )
