"""Tamper-evident audit log: append-only records in the store, each chained to the previous by hash.

Design
------
Every record has an *envelope* (`seq`, `at`, `action`, `meta`) and *subject data* (`actor`,
`tenant`, `target`, `details`), which may be personal data. The chain hash of record n is

    hash_n = SHA-256(canonical JSON [1, seq, at, action, meta, subject_hash_n, hash_(n-1)])
    subject_hash_n = SHA-256(canonical JSON [nonce_n, actor, tenant, target, details])

with a random per-record `nonce`. `secure-agent audit verify` recomputes both: an edited record
fails its hash, a removed record leaves a gap in `seq` and breaks the next record's `prev_hash`, and
reordered records fail both. Truncating the newest records is caught against an anchor (`audit
head` prints one; every record is also written as a JSON log line, which is an independent copy).

Erasure (GDPR) and retention must remove subject data without breaking the chain. They set the
subject columns and the nonce to NULL and `redacted_by` to the seq of a *redaction record*
(`tenant.erase`, `retention.purge`, `audit.redact`) appended in the same transaction; that
record's `meta` (chained, never personal) holds the count and a digest of the redacted seqs. Verify
checks that every redacted record is accounted for by such a later record, so redaction cannot
be used to hide an edit. Without its nonce, a subject hash cannot be used to confirm a guess of
the erased data.

Writes are serialized per store: in this process by a lock; across processes and replicas by the
primary key on `seq` (a writer that lost the race gets an integrity error and retries with the new
head). That works the same on SQLite (one writer at a time, busy_timeout) and PostgreSQL. Database
triggers refuse DELETE and any UPDATE other than a redaction (defence in depth: someone with
direct database access can drop them, which is what the hash chain is for).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent_runner.observability import context as log_context
from agent_runner.observability.logs import event
from sqlalchemy import DDL, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError, OperationalError

from ..store.store import Store
from ..store.tables import AuditEvent
from .pii import StorageRedactor

log = logging.getLogger("mcp_api.audit")

GENESIS = "0" * 64
CHAIN_VERSION = 1
REDACTION_ACTIONS = frozenset({"audit.redact", "retention.purge", "tenant.erase", "subject.erase"})
MAX_DETAILS_CHARS = 64 * 1024
MAX_ATTEMPTS = 60


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sha(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def subject_hash(
    nonce: str, actor: str | None, tenant: str | None, target: str | None, details: str | None
) -> str:
    return _sha([nonce, actor, tenant, target, details])


def chain_hash(seq: int, at: str, action: str, meta: str, subject: str, prev: str) -> str:
    return _sha([CHAIN_VERSION, seq, at, action, meta, subject, prev])


def seqs_digest(seqs: Sequence[int]) -> str:
    return hashlib.sha256(",".join(str(s) for s in sorted(seqs)).encode()).hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: str
    action: str
    hash: str


@dataclass
class VerifyReport:
    records: int = 0
    redacted: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"ok": self.ok, "records": self.records, "redacted": self.redacted, "head_seq": self.head_seq,
                "head_hash": self.head_hash, "problems": self.problems}  # fmt: skip


class AuditLog:
    def __init__(self, store: Store, redactor: StorageRedactor | None = None) -> None:
        self.store = store
        self.redactor = redactor or StorageRedactor()
        self._lock = asyncio.Lock()

    # --- writing -----------------------------------------------------------------------------------
    async def record(
        self,
        action: str,
        actor: str | None = None,
        tenant: str | None = None,
        target: str | None = None,
        details: dict[str, Any] | None = None,
        *,
        meta: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one record. `details` is redacted (secrets, PII) before it is stored; `meta` must hold
        no personal data (it can never be erased)."""
        stored = None
        if details:
            stored = json.dumps(self.redactor.value(details), sort_keys=True, default=str)
            if len(stored) > MAX_DETAILS_CHARS:
                stored = json.dumps({"truncated": True, "preview": stored[:1024]})
        return await self._append(
            action,
            actor and actor[:256],
            tenant,
            target and self.redactor.text(target)[:512],
            stored,
            meta or {},
        )

    async def _append(
        self,
        action: str,
        actor: str | None,
        tenant: str | None,
        target: str | None,
        details: str | None,
        meta: dict[str, Any],
        before_insert: Callable[[Any, int], Any] | None = None,
    ) -> AuditRecord:
        async with self._lock:
            for attempt in range(MAX_ATTEMPTS):
                async with self.store.session() as session:
                    try:
                        head = (
                            await session.execute(
                                select(AuditEvent.seq, AuditEvent.hash)
                                .order_by(AuditEvent.seq.desc())
                                .limit(1)
                            )
                        ).first()
                        seq, prev = (head.seq + 1, head.hash) if head else (1, GENESIS)
                        extra_meta = await before_insert(session, seq) if before_insert else None
                        meta_json = json.dumps({**meta, **(extra_meta or {})}, sort_keys=True)
                        nonce = secrets.token_hex(16)
                        at = now_iso()
                        subject = subject_hash(nonce, actor, tenant, target, details)
                        digest = chain_hash(seq, at, action, meta_json, subject, prev)
                        session.add(
                            AuditEvent(
                                seq=seq, at=at, action=action, meta=meta_json, actor=actor, tenant=tenant,
                                target=target, details=details, nonce=nonce, subject_hash=subject,
                                prev_hash=prev, hash=digest,
                            )
                        )  # fmt: skip
                        await session.commit()
                    except (IntegrityError, OperationalError, _Raced):
                        # Another process appended first (or holds the write lock): retry on the new head.
                        await session.rollback()
                        await asyncio.sleep(random.uniform(0.002, 0.02) * min(attempt + 1, 10))  # noqa: S311 - jitter, not crypto
                        continue
                break
            else:
                raise RuntimeError("audit log: could not append after repeated write conflicts")
        record = AuditRecord(seq=seq, at=at, action=action, hash=digest)
        event(
            log, logging.INFO, "audit", audit_action=action, audit_seq=seq, audit_hash=digest, actor=actor,
            target=target, audit_tenant=log_context.hash_tenant(tenant) if tenant else None,
            audit_meta=meta_json,
        )  # fmt: skip
        return record

    async def redact(self, action: str, actor: str | None, *, tenant: str | None = None, before: str | None = None,
                     actor_filter: str | None = None, meta: dict[str, Any] | None = None,
                     skip_actions: tuple[str, ...] = ()) -> int:  # fmt: skip
        """Erase the subject data of matching records (by tenant, by actor, or older than `before`), in the
        same transaction as the redaction record `action` that accounts for them. Returns the count."""
        if action not in REDACTION_ACTIONS:
            raise ValueError(f"{action!r} is not a redaction action")
        counted: list[int] = []

        async def erase(session, seq: int) -> dict:
            query = select(AuditEvent.seq).where(AuditEvent.redacted_by.is_(None))
            if tenant is not None:
                query = query.where(AuditEvent.tenant == tenant)
            if actor_filter is not None:
                query = query.where(AuditEvent.actor == actor_filter)
            if before is not None:
                query = query.where(AuditEvent.at < before)
            if skip_actions:
                query = query.where(AuditEvent.action.not_in(skip_actions))
            seqs = list((await session.scalars(query)).all())
            for chunk in _chunks(seqs, 500):
                result = await session.execute(
                    update(AuditEvent)
                    .where(AuditEvent.seq.in_(chunk), AuditEvent.redacted_by.is_(None))
                    .values(actor=None, tenant=None, target=None, details=None, nonce=None, redacted_by=seq)
                )
                if result.rowcount != len(chunk):
                    raise _Raced
            counted[:] = seqs
            return {"redacted": len(seqs), "redacted_seqs_sha256": seqs_digest(seqs)}

        await self._append(action, actor, None, None, None, meta or {}, before_insert=erase)
        return len(counted)

    # --- reading -------------------------------------------------------------------------------------
    async def head(self) -> tuple[int, str]:
        async with self.store.session() as session:
            row = (
                await session.execute(
                    select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
                )
            ).first()
        return (row.seq, row.hash) if row else (0, GENESIS)

    async def events(self, *, tenant: str | None = None, actor: str | None = None) -> list[dict]:
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if tenant is not None:
            query = query.where(AuditEvent.tenant == tenant)
        if actor is not None:
            query = query.where(AuditEvent.actor == actor)
        async with self.store.session() as session:
            rows = (await session.scalars(query)).all()
        return [_as_dict(r) for r in rows]

    async def verify(self, anchor: tuple[int, str] | None = None, batch: int = 2000) -> VerifyReport:
        report = VerifyReport()
        expected, prev = 1, GENESIS
        redacted_by: dict[int, list[int]] = {}
        redaction_events: dict[int, tuple[str, dict]] = {}
        anchor_seen = anchor is None
        last_seq = 0
        async with self.store.session() as session:
            while True:
                rows = (
                    await session.scalars(
                        select(AuditEvent)
                        .where(AuditEvent.seq > last_seq)
                        .order_by(AuditEvent.seq)
                        .limit(batch)
                    )
                ).all()
                if not rows:
                    break
                for row in rows:
                    _check_row(row, expected, prev, report, redacted_by, redaction_events)
                    if anchor is not None and row.seq == anchor[0]:
                        anchor_seen = True
                        if row.hash != anchor[1]:
                            report.problems.append(f"#{row.seq} differs from the anchor hash")
                    expected, prev, last_seq = row.seq + 1, row.hash, row.seq
                    report.records += 1
                    report.head_seq, report.head_hash = row.seq, row.hash
        if not anchor_seen:
            report.problems.append(
                f"the anchor record #{anchor[0]} is missing: records at or before it were removed "  # type: ignore[index]
                "(the log was truncated)"
            )
        for seq, (action, meta) in redaction_events.items():
            seqs = redacted_by.pop(seq, [])
            if meta.get("redacted", 0) != len(seqs) or meta.get("redacted_seqs_sha256") != seqs_digest(seqs):
                report.problems.append(
                    f"#{seq} ({action}) accounts for {meta.get('redacted', 0)} redacted records, but {len(seqs)} "
                    "records name it: records were redacted, restored or removed outside the log"
                )
            if seqs and max(seqs) >= seq:
                report.problems.append(f"#{seq} ({action}) claims to redact records that came after it")
        for seq, seqs in redacted_by.items():
            report.problems.append(
                f"records {_ranges(seqs)} are marked redacted by #{seq}, which is no redaction record"
            )
        return report


def _check_row(row: AuditEvent, expected: int, prev: str, report: VerifyReport,
               redacted_by: dict[int, list[int]], redaction_events: dict[int, tuple[str, dict]]) -> None:  # fmt: skip
    if row.seq != expected:
        if row.seq > expected:
            report.problems.append(f"records {_ranges(range(expected, row.seq))} are missing (removed)")
        else:
            report.problems.append(f"#{row.seq} is out of order")
    if row.prev_hash != prev:
        report.problems.append(f"#{row.seq} does not follow the record before it (chain broken)")
    if chain_hash(row.seq, row.at, row.action, row.meta, row.subject_hash, row.prev_hash) != row.hash:
        report.problems.append(f"#{row.seq} ({row.action}) was altered: its hash does not match its contents")
    if row.redacted_by is None:
        if (
            row.nonce is None
            or subject_hash(row.nonce, row.actor, row.tenant, row.target, row.details) != row.subject_hash
        ):
            report.problems.append(
                f"#{row.seq} ({row.action}) was altered: actor, tenant, target or details changed"
            )
    else:
        report.redacted += 1
        if any(v is not None for v in (row.actor, row.tenant, row.target, row.details, row.nonce)):
            report.problems.append(f"#{row.seq} is marked redacted but still holds subject data")
        redacted_by.setdefault(row.redacted_by, []).append(row.seq)
    if row.action in REDACTION_ACTIONS:
        try:
            meta = json.loads(row.meta)
        except ValueError:
            meta = {}
        redaction_events[row.seq] = (row.action, meta if isinstance(meta, dict) else {})


def _as_dict(row: AuditEvent) -> dict:
    return {
        "seq": row.seq, "at": row.at, "action": row.action, "meta": json.loads(row.meta or "{}"),
        "actor": row.actor, "tenant": row.tenant, "target": row.target,
        "details": json.loads(row.details) if row.details else None,
        "redacted_by": row.redacted_by, "hash": row.hash,
    }  # fmt: skip


def _chunks(items: list[int], size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ranges(seqs) -> str:
    seqs = sorted(seqs)
    if not seqs:
        return "-"
    parts, start, last = [], seqs[0], seqs[0]
    for s in seqs[1:]:
        if s != last + 1:
            parts.append(f"#{start}" if start == last else f"#{start}-#{last}")
            start = s
        last = s
    parts.append(f"#{start}" if start == last else f"#{start}-#{last}")
    return ", ".join(parts[:20]) + (" …" if len(parts) > 20 else "")


class _Raced(Exception):
    """A concurrent redaction touched the same records: retry."""


# --- append-only enforcement in the database ---------------------------------------------------------
_IMMUTABLE = ("seq", "at", "action", "meta", "subject_hash", "prev_hash", "hash")
_SQLITE_TRIGGERS = [
    "CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_events_redact_only BEFORE UPDATE ON audit_events WHEN "
    + " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in _IMMUTABLE)
    + " OR OLD.redacted_by IS NOT NULL OR NEW.redacted_by IS NULL OR NEW.actor IS NOT NULL"
    " OR NEW.tenant IS NOT NULL OR NEW.target IS NOT NULL OR NEW.details IS NOT NULL OR NEW.nonce IS NOT NULL "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only (only redaction may update a record)'); END",
]
_PG_FUNCTION = (
    "CREATE OR REPLACE FUNCTION audit_events_guard() RETURNS trigger AS $$ BEGIN "
    "IF TG_OP = 'DELETE' THEN RAISE EXCEPTION 'audit_events is append-only'; END IF; "
    "IF "
    + " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in _IMMUTABLE)
    + " OR OLD.redacted_by IS NOT NULL OR NEW.redacted_by IS NULL OR NEW.actor IS NOT NULL"
    " OR NEW.tenant IS NOT NULL OR NEW.target IS NOT NULL OR NEW.details IS NOT NULL OR NEW.nonce IS NOT NULL "
    "THEN RAISE EXCEPTION 'audit_events is append-only (only redaction may update a record)'; END IF; "
    "RETURN NEW; END $$ LANGUAGE plpgsql"
)
_PG_TRIGGERS = [
    _PG_FUNCTION,
    "DROP TRIGGER IF EXISTS audit_events_guard ON audit_events",
    "CREATE TRIGGER audit_events_guard BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION audit_events_guard()",
]
for _statement in _SQLITE_TRIGGERS:
    sa_event.listen(AuditEvent.__table__, "after_create", DDL(_statement).execute_if(dialect="sqlite"))
for _statement in _PG_TRIGGERS:
    sa_event.listen(AuditEvent.__table__, "after_create", DDL(_statement).execute_if(dialect="postgresql"))
