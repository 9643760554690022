"""Retention: how long each kind of stored data is kept, and the purge job that applies it.

Each kind of data registers a `RetentionRule` (its retention setting and a purge function) with
`register_retention`; the purge job knows no table by name. Audit payloads are registered here;
conversations and transcripts register themselves when they land (setting
`SECURE_AGENT_RETENTION__CONVERSATIONS_DAYS`). The job runs in the server every
`SECURE_AGENT_RETENTION__PURGE_INTERVAL_S` (idempotent, so every worker may run it) and on demand
with `secure-agent retention purge`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from ..store.tables import AuditEvent
from .audit import AuditLog, iso

if TYPE_CHECKING:
    from ..settings import Settings
    from ..store.store import Store

log = logging.getLogger(__name__)
RETENTION_ACTOR = "system:retention"


@dataclass
class PurgeContext:
    settings: Settings
    store: Store
    audit: AuditLog


@dataclass(frozen=True)
class RetentionRule:
    name: str
    days: Callable[[Settings], int]  # 0 = keep forever
    purge: Callable[[PurgeContext, datetime], Awaitable[int]]  # removes data older than the cutoff
    description: str = ""


_RULES: dict[str, RetentionRule] = {}


def register_retention(rule: RetentionRule) -> None:
    _RULES[rule.name] = rule


def rules() -> list[RetentionRule]:
    return list(_RULES.values())


async def purge_expired(ctx: PurgeContext, now: datetime | None = None) -> dict[str, int]:
    """Apply every rule once; returns how many items each rule removed."""
    now = now or datetime.now(UTC)
    removed: dict[str, int] = {}
    for rule in rules():
        days = rule.days(ctx.settings)
        if days <= 0:
            continue
        removed[rule.name] = await rule.purge(ctx, now - timedelta(days=days))
    if any(removed.values()):
        log.info("retention purge removed %s", removed)
    return removed


async def purge_forever(ctx: PurgeContext, interval_s: float, first_delay_s: float = 60.0) -> None:
    """The in-server purge job (a lifespan task); the first run waits a minute so start-up stays quick."""
    await asyncio.sleep(min(interval_s, first_delay_s))
    while True:
        try:
            await purge_expired(ctx)
        except Exception:  # a store hiccup must not end the job; the next round retries
            log.warning("retention purge failed; retrying in %ss", interval_s, exc_info=True)
        await asyncio.sleep(interval_s)


async def _purge_audit_payloads(ctx: PurgeContext, cutoff: datetime) -> int:
    before = iso(cutoff)
    async with ctx.store.session() as session:
        pending = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.redacted_by.is_(None), AuditEvent.at < before, AuditEvent.action.not_in(_KEEP))
        )
    if not pending:
        return 0
    return await ctx.audit.redact(
        "retention.purge",
        RETENTION_ACTOR,
        before=before,
        meta={"rule": "audit_payloads", "cutoff": before},
        skip_actions=_KEEP,
    )


# Purge records name only the system actor: purging them would just add a new purge record each round.
_KEEP = ("retention.purge",)


register_retention(
    RetentionRule(
        name="audit_payloads",
        days=lambda s: s.retention.audit_payload_days,
        purge=_purge_audit_payloads,
        description="actor, tenant, target and details of audit records; the hash-chained envelope stays",
    )
)
