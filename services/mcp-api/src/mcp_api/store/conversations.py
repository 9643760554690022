"""Agent conversations: one row per conversation, one row per message (tool calls and results included).

Defined on the store's Base, so `Store.create_schema()` creates them (store/tables.py imports this module)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, delete, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from .tables import Base


class Conversation(Base):
    __tablename__ = "agent_conversations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    workspace: Mapped[str] = mapped_column(String(64), default="default")
    role: Mapped[str] = mapped_column(String(64), default="default")
    # idle | running | awaiting_approval
    status: Mapped[str] = mapped_column(String(32), default="idle")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # JSON: {"token_hash", "expires", "calls": [...], "reason", "tool"} while awaiting approval.
    pending: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConversationMessage(Base):
    __tablename__ = "agent_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("agent_conversations.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # user | assistant | tool
    body: Mapped[str] = mapped_column(Text)  # JSON of the neutral message (agent/context.py)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ConversationInfo:
    id: str
    tenant: str
    title: str
    workspace: str
    role: str
    status: str
    cancel_requested: bool
    pending: dict[str, Any] | None
    input_tokens: int
    output_tokens: int
    created_at: datetime
    updated_at: datetime
    message_count: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "conversation_id": self.id, "title": self.title, "workspace": self.workspace, "role": self.role,
            "status": self.status, "messages": self.message_count,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }  # fmt: skip


def _info(row: Conversation, count: int = 0) -> ConversationInfo:
    return ConversationInfo(
        id=row.id, tenant=row.tenant, title=row.title, workspace=row.workspace, role=row.role,
        status=row.status, cancel_requested=row.cancel_requested,
        pending=json.loads(row.pending) if row.pending else None,
        input_tokens=row.input_tokens, output_tokens=row.output_tokens,
        created_at=row.created_at, updated_at=row.updated_at, message_count=count,
    )  # fmt: skip


class ConversationStore:
    """Tenant-scoped access: every method takes the tenant, so one tenant cannot name another's rows."""

    def __init__(self, store) -> None:
        self.store = store

    async def create(self, tenant: str, *, title: str, workspace: str, role: str) -> ConversationInfo:
        at = now()
        row = Conversation(
            id="conv_" + secrets.token_hex(12), tenant=tenant, title=title[:200], workspace=workspace, role=role,
            status="idle", cancel_requested=False, pending=None, input_tokens=0, output_tokens=0,
            created_at=at, updated_at=at,
        )  # fmt: skip
        async with self.store.session() as session:
            session.add(row)
            await session.commit()
        return _info(row)

    async def get(self, tenant: str, conversation_id: str) -> ConversationInfo | None:
        async with self.store.session() as session:
            row = await session.get(Conversation, conversation_id)
            if row is None or row.tenant != tenant:
                return None
            count = await session.scalar(
                select(func.count()).where(ConversationMessage.conversation_id == conversation_id)
            )
            return _info(row, count or 0)

    async def list(self, tenant: str, limit: int = 50) -> list[ConversationInfo]:
        async with self.store.session() as session:
            counts = (
                select(ConversationMessage.conversation_id, func.count().label("n"))
                .group_by(ConversationMessage.conversation_id)
                .subquery()
            )
            rows = await session.execute(
                select(Conversation, counts.c.n)
                .outerjoin(counts, counts.c.conversation_id == Conversation.id)
                .where(Conversation.tenant == tenant)
                .order_by(Conversation.updated_at.desc())
                .limit(limit)
            )
            return [_info(row, n or 0) for row, n in rows.all()]

    async def delete(self, tenant: str, conversation_id: str) -> bool:
        async with self.store.session() as session:
            row = await session.get(Conversation, conversation_id)
            if row is None or row.tenant != tenant:
                return False
            await session.execute(
                delete(ConversationMessage).where(ConversationMessage.conversation_id == conversation_id)
            )
            await session.delete(row)
            await session.commit()
            return True

    async def messages(self, tenant: str, conversation_id: str) -> list[dict[str, Any]]:
        async with self.store.session() as session:
            owner = await session.scalar(
                select(Conversation.tenant).where(Conversation.id == conversation_id)
            )
            if owner != tenant:
                return []
            rows = await session.scalars(
                select(ConversationMessage)
                .where(ConversationMessage.conversation_id == conversation_id)
                .order_by(ConversationMessage.seq)
            )
            return [json.loads(r.body) for r in rows]

    async def append(
        self, tenant: str, conversation_id: str, messages: list[dict[str, Any]], **fields
    ) -> None:
        """Persist new messages and conversation fields in one transaction (called after every step)."""
        async with self.store.session() as session:
            row = await session.get(Conversation, conversation_id)
            if row is None or row.tenant != tenant:
                raise KeyError(conversation_id)
            last = await session.scalar(
                select(func.max(ConversationMessage.seq)).where(
                    ConversationMessage.conversation_id == conversation_id
                )
            )
            seq = (last or 0) + 1
            at = now()
            for message in messages:
                session.add(
                    ConversationMessage(
                        conversation_id=conversation_id, seq=seq, role=message["role"],
                        body=json.dumps(message, default=str), created_at=at,
                    )
                )  # fmt: skip
                seq += 1
            for name, value in fields.items():
                if name == "pending":
                    value = json.dumps(value) if value is not None else None
                if name in ("add_input_tokens", "add_output_tokens"):
                    attr = name.removeprefix("add_")
                    setattr(row, attr, getattr(row, attr) + value)
                    continue
                setattr(row, name, value)
            row.updated_at = at
            await session.commit()

    async def claim(
        self, tenant: str, conversation_id: str, *, stale_after_s: float
    ) -> ConversationInfo | None:
        """Mark a conversation running unless another run holds it (a run older than stale_after_s is
        presumed dead). Returns None when it is busy."""
        async with self.store.session() as session:
            row = await session.get(Conversation, conversation_id)
            if row is None or row.tenant != tenant:
                raise KeyError(conversation_id)
            age = (now() - _aware(row.updated_at)).total_seconds()
            if row.status == "running" and age < stale_after_s:
                return None
            result = await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id, Conversation.updated_at == row.updated_at)
                .values(status="running", cancel_requested=False, updated_at=now())
            )
            await session.commit()
            if result.rowcount != 1:
                return None
            return await self.get(tenant, conversation_id)

    async def set_fields(self, tenant: str, conversation_id: str, **fields) -> None:
        await self.append(tenant, conversation_id, [], **fields)

    async def cancel_requested(self, conversation_id: str) -> bool:
        async with self.store.session() as session:
            return bool(
                await session.scalar(
                    select(Conversation.cancel_requested).where(Conversation.id == conversation_id)
                )
            )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
