"""Tables of the store. The same models serve SQLite (embedded) and PostgreSQL (cluster)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    # The public half of a key (`sa_<key_id>_<secret>`): lets us find the row without scanning.
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128))
    salt: Mapped[str] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[str] = mapped_column(Text)  # space-separated, as in OAuth
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, default=None)
    # Set by `keys rotate --grace`: the key is refused from then on, as if revoked (auth/api_keys.py).
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, default=None)


class AuditEvent(Base):
    """Append-only, hash-chained audit log (see mcp_api.security.audit for the chain and erasure design)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(32), index=True)  # UTC ISO-8601, fixed width: hashed as stored
    action: Mapped[str] = mapped_column(String(64), index=True)
    meta: Mapped[str] = mapped_column(Text, default="{}")  # chained as is; never personal data, never erased
    # Subject data: may be personal, so it is hashed into the chain through subject_hash and can be erased.
    actor: Mapped[str | None] = mapped_column(String(256), nullable=True)
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    target: Mapped[str | None] = mapped_column(String(512), nullable=True)
    details: Mapped[str | None] = mapped_column(Text, nullable=True)
    nonce: Mapped[str | None] = mapped_column(String(32), nullable=True)
    subject_hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    redacted_by: Mapped[int | None] = mapped_column(Integer, nullable=True)

from . import conversations as _conversations  # noqa: E402,F401  agent tables on the same Base
