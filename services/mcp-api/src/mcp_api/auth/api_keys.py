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
import sqlite3
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.engine import make_url

from ..security.audit import AuditLog
from ..store.store import Store
from ..store.tables import ApiKey
from .principal import TENANT_RE, Principal
from .scopes import parse_scopes

KEY_RE = re.compile(r"^sa_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{20,128})$")
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# Freshness contract: a revoked, rotated-away or erased key is refused at once, by every process and
# replica, from the next request on. Each check is answered from a store lookup (`_fresh_row`: a SELECT
# that started after the request arrived; concurrent checks of one key share it) or from a cache entry
# proven to be exactly as fresh as such a SELECT would be:
# - SQLite (the local default; `api_key_cache_exact`, on by default): `PRAGMA data_version`, read on a
#   dedicated long-lived read-only connection to the same file (`_DataVersion`), changes whenever any
#   other connection (any process, this one's SQLAlchemy pool included) commits anything. A lookup reads
#   it *before* its SELECT starts and the entry keeps that value; a check uses the entry only while a
#   fresh read still returns it. Any commit since the read (of anything: a revocation, an audit row, a
#   run) is a miss and goes to the store, so the entry is never older than a SELECT run now would be,
#   and a commit racing with the lookup's SELECT invalidates it too. The read costs ~3 us, synchronous
#   on the event loop (timeit on the dev box: hit ~5 us in all vs ~300 us for a SELECT via aiosqlite's
#   thread). If it fails (locked, file gone, cannot open) the check goes to the store and the connection
#   is reopened on the next check; values from one connection are never compared with another's.
#   Under a steady write load most checks are misses and cost what they did without the cache.
# - Other stores (PostgreSQL) have no such cheap signal: every check asks the store unless the opt-in
#   `api_key_cache_ttl_s` > 0 trusts a verified key that long; a revocation then reaches this process
#   at once but other processes only within the TTL. On SQLite the TTL, if set, applies as well.
# What an entry trusts: the key id maps to the SHA-256 of the whole presented key and the principal
# (tenant, scopes) the store returned; another secret for the same key id never matches it and goes to
# the store. Failures are never cached. A key with an expiry (`rotate` with a grace period) is never
# served from the cache at or after it. Revoke, rotate and tenant erasure through this service drop
# the entries at once, and a lookup that raced with them does not store its (older) answer. The cache is
# bounded (MAX_CACHED_KEYS). Exactness assumes the file at the configured path is changed only through
# SQLite (replacing the file under a running server fools the pooled SQLAlchemy connections as well).
CACHE_TTL_S = 0.0
MAX_CACHED_KEYS = 10_000
_VERIFY_QUERY = select(
    ApiKey.key_id, ApiKey.tenant, ApiKey.salt, ApiKey.secret_hash, ApiKey.scopes, ApiKey.revoked_at,
    ApiKey.expires_at,
).where(ApiKey.key_id == bindparam("key_id"))  # fmt: skip


class _DataVersion:
    """`PRAGMA data_version` of one SQLite database file, on a dedicated read-only connection opened on
    first use and reopened after any error. `read()` returns (connection number, data_version), so a
    value read on one connection never equals one read on another, or None if it cannot be read."""

    __slots__ = ("_uri", "_cursor", "_serial", "_finalizer", "__weakref__")

    def __init__(self, path: Path) -> None:
        self._uri = f"{path.absolute().as_uri()}?mode=ro"
        self._cursor: sqlite3.Cursor | None = None
        self._serial = 0
        self._finalizer: weakref.finalize | None = None

    @classmethod
    def for_url(cls, url: str) -> _DataVersion | None:
        """For a plain SQLite file URL; None for other stores, in-memory or URI-style SQLite URLs."""
        parsed = make_url(url)
        database = parsed.database
        if parsed.get_backend_name() != "sqlite" or parsed.query or database in (None, "", ":memory:"):
            return None
        if database.startswith("file:"):
            return None
        return cls(Path(database))

    def read(self) -> tuple[int, int] | None:
        try:
            cursor = self._cursor or self._open()
            return (self._serial, cursor.execute("PRAGMA data_version").fetchone()[0])
        except Exception:  # noqa: BLE001 - sqlite3.Error, OSError, ...: the caller asks the store
            self.close()
            return None

    def _open(self) -> sqlite3.Cursor:
        # timeout=0: never wait for a lock on the event loop (a busy database is a miss, not a stall);
        # autocommit, so no read transaction stays open between reads.
        conn = sqlite3.connect(self._uri, uri=True, timeout=0, isolation_level=None, check_same_thread=False)
        self._serial += 1
        self._finalizer = weakref.finalize(self, conn.close)
        self._cursor = conn.cursor()
        return self._cursor

    def close(self) -> None:
        finalizer, self._finalizer, self._cursor = self._finalizer, None, None
        if finalizer is not None:
            try:
                finalizer()
            except Exception:  # noqa: BLE001, S110 - closing a broken connection
                pass


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
    def __init__(
        self,
        store: Store,
        audit: AuditLog | None = None,
        cache_ttl_s: float = CACHE_TTL_S,
        *,
        cache_exact: bool = True,
    ) -> None:
        self._store = store
        # Every key change is audited, whichever path made it (CLI, first start, an admin API).
        self.audit = audit or AuditLog(store)
        self._cache_ttl_s = cache_ttl_s
        # The exact cache (see the comment at the top): SQLite files only.
        self._data_version = _DataVersion.for_url(store.url) if cache_exact else None
        # key id -> (TTL deadline (monotonic), data_version token or None, SHA-256 of the whole key,
        # principal, the key's expiry (epoch seconds) or None)
        self._cache: dict[str, tuple[float, tuple[int, int] | None, str, Principal, float | None]] = {}
        self._flights: dict[str, _Flight] = {}
        # Bumped by every key change made here, when its cache entries are dropped: a lookup that
        # started before it does not store its answer.
        self._changes = 0

    def close(self) -> None:
        """Close the data_version connection (reopened if the service is used again)."""
        if self._data_version is not None:
            self._data_version.close()

    def _forget(self, key_id: str) -> None:
        self._changes += 1
        self._cache.pop(key_id, None)

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
        self._forget(key_id)
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
        self._forget(key_id)
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
        self._changes += 1
        self._cache = {k: v for k, v in self._cache.items() if v[3].tenant != tenant}
        return result.rowcount or 0

    async def verify(self, key: str) -> Principal | None:
        """The principal for a valid, unrevoked key; None for anything else (no reason leaks out)."""
        match = KEY_RE.match(key)
        if not match:
            return None
        key_id, secret = match.groups()
        key_hash = hashlib.sha256(key.encode()).hexdigest()
        cached = self._cache.get(key_id)
        if cached is not None:
            deadline, version, expected_hash_of_key, principal, until = cached
            if (
                (until is None or time.time() < until)
                and hmac.compare_digest(expected_hash_of_key, key_hash)
                and (
                    deadline > time.monotonic()
                    or (version is not None and version == self._data_version.read())  # type: ignore[union-attr]
                )
            ):
                return principal
        row, version, changes = await self._fresh_row(key_id)
        if row is None or row.revoked_at is not None or _expired(row.expires_at):
            return None
        if not hmac.compare_digest(row.secret_hash, _hash(row.salt, secret)):
            return None
        principal = Principal(tenant=row.tenant, key_id=row.key_id, scopes=frozenset(row.scopes.split()))
        if changes != self._changes:  # revoked, rotated or erased here meanwhile: answer, do not keep
            return principal
        until = _utc(row.expires_at).timestamp() if row.expires_at is not None else None
        ttl = self._cache_ttl_s
        if ttl > 0 and until is not None:  # never trusted from the cache past its expiry
            ttl = min(ttl, until - time.time())
        if ttl > 0 or version is not None:
            now = time.monotonic()
            if len(self._cache) >= MAX_CACHED_KEYS:
                current = self._data_version.read() if self._data_version is not None else None
                live = {k: v for k, v in self._cache.items() if v[0] > now or (v[1] and v[1] == current)}
                self._cache = live
                if len(self._cache) >= MAX_CACHED_KEYS:
                    self._cache.clear()
            self._cache[key_id] = (now + max(ttl, 0.0), version, key_hash, principal, until)
        return principal

    async def _select(self, key_id: str) -> Any:
        # The hot path of every request: one Core SELECT of the columns needed, no ORM session
        # (identity map, unit of work, begin/commit), so fewer store round trips per request.
        async with self._store.engine.connect() as conn:
            return (await conn.execute(_VERIFY_QUERY, {"key_id": key_id})).first()

    async def _fresh_row(self, key_id: str) -> tuple[Any, tuple[int, int] | None, int]:
        """The key's row from a SELECT that started after this call did (so a revocation committed
        before it is always seen), shared by every concurrent call for the same key: a call that
        finds a lookup already running waits for the next one, which starts when that one ends. Under
        load one lookup answers a whole burst of requests; one call at a time costs the same as before.
        With the row: the data_version token read just before the SELECT started (None if unknown or
        off) and the count of key changes made here by then.
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
                # data_version first, then the SELECT: a commit between the two only makes the entry
                # stale at once (a miss), never a stale entry that looks fresh.
                changes = self._changes
                version = self._data_version.read() if self._data_version is not None else None
                future.set_result((await self._select(key_id), version, changes))
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
