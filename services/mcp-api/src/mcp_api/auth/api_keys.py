"""API keys: `sa_<key_id>_<secret>`, stored as a salted SHA-256 of the secret, never in clear.

The secret carries 256 bits of randomness, so a fast salted hash is enough (slow KDFs only help
against guessable passwords) and keeps verification cheap on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, select

from ..security.audit import AuditLog
from ..store.store import Store
from ..store.tables import ApiKey
from .principal import TENANT_RE, Principal
from .scopes import parse_scopes

KEY_RE = re.compile(r"^sa_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{20,128})$")
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# A verified key may be trusted for this long without a store round trip. The default, 0, asks the
# store on every request (a primary-key lookup), so a revoked key is refused at once by every process
# and replica; a positive TTL trades that for fewer lookups (revocation then reaches other processes
# within the TTL; this process clears its entry at once).
CACHE_TTL_S = 0.0
_VERIFY_QUERY = select(
    ApiKey.key_id, ApiKey.tenant, ApiKey.salt, ApiKey.secret_hash, ApiKey.scopes, ApiKey.revoked_at
).where(ApiKey.key_id == bindparam("key_id"))


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    tenant: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


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
        # The hot path of every request: one Core SELECT of the columns needed, no ORM session
        # (identity map, unit of work, begin/commit), so fewer store round trips per request.
        async with self._store.engine.connect() as conn:
            row = (await conn.execute(_VERIFY_QUERY, {"key_id": key_id})).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_hash, _hash(row.salt, secret)):
            return None
        principal = Principal(tenant=row.tenant, key_id=row.key_id, scopes=frozenset(row.scopes.split()))
        if self._cache_ttl_s > 0:
            self._cache[key_id] = (now + self._cache_ttl_s, hashlib.sha256(key.encode()).hexdigest(), principal)
        return principal

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
    )
