"""secure-agent audit | tenant | subject | retention: the audit chain, GDPR export/erase, retention purge."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from pathlib import Path

import click

from ..auth.api_keys import ApiKeyService
from ..security.audit import AuditLog
from ..security.pii import StorageRedactor
from ..security.privacy import PrivacyContext, erase_subject, erase_tenant, export_subject, export_tenant
from ..security.retention import PurgeContext, purge_expired
from ..settings import Settings
from ..store.store import Store


def cli_actor() -> str:
    """Who ran a CLI command, for the audit log."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"cli:{user}"[:256]


def _run(fn):
    async def run():
        settings = Settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = Store(settings.store_url)
        try:
            await store.create_schema()
            audit = AuditLog(store, StorageRedactor(settings.privacy))
            return await fn(PrivacyContext(settings, store, ApiKeyService(store, audit), audit))
        finally:
            await store.aclose()

    return asyncio.run(run())


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@click.option(
    "--anchor", help="SEQ:HASH from an earlier 'audit head': also detects removal of the newest records."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def audit_verify(anchor: str | None, as_json: bool) -> None:
    """Recompute the hash chain; exit 1 if any record was edited, removed or reordered."""
    parsed = None
    if anchor:
        seq, _, digest = anchor.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise click.BadParameter(
                "use SEQ:HASH as printed by 'secure-agent audit head'", param_hint="--anchor"
            )
        parsed = (int(seq), digest)
    report = _run(lambda ctx: ctx.audit.verify(parsed))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    elif report.ok:
        click.echo(
            f"audit log intact: {report.records} records ({report.redacted} with erased subject data), "
            f"head #{report.head_seq} {report.head_hash}"
        )
    else:
        click.echo(
            f"audit log TAMPERED ({len(report.problems)} problems in {report.records} records):", err=True
        )
        for problem in report.problems:
            click.echo(f"  - {problem}", err=True)
    sys.exit(0 if report.ok else 1)


@audit.command("head")
def audit_head() -> None:
    """Print SEQ:HASH of the newest record; keep it elsewhere and pass it to 'verify --anchor'."""
    seq, digest = _run(lambda ctx: ctx.audit.head())
    click.echo(f"{seq}:{digest}")


@audit.command("list")
@click.option("--tenant", "tenant_name", help="Only this tenant's records.")
@click.option("--limit", default=50, show_default=True, help="Newest N records.")
def audit_list(tenant_name: str | None, limit: int) -> None:
    """Show records as JSON lines."""
    events = _run(lambda ctx: ctx.audit.events(tenant=tenant_name))
    for item in events[-limit:]:
        click.echo(json.dumps(item))


@click.group()
def tenant() -> None:
    """Export or erase everything stored about a tenant (GDPR)."""


@tenant.command("export")
@click.argument("name")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Archive to write (.tar.gz, mode 0600).")  # fmt: skip
def tenant_export(name: str, output: Path) -> None:
    """Write keys (metadata), audit records and workspace files of a tenant to one archive."""
    try:
        manifest = _run(lambda ctx: export_tenant(ctx, name, output, cli_actor()))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"exported tenant {name} to {output}: {json.dumps(manifest['sources'])}")


@tenant.command("erase")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def tenant_erase(name: str, yes: bool) -> None:
    """Delete a tenant's keys and workspaces and erase its audit subject data (the chain stays valid).
    Stop the tenant's traffic first (OAuth users: disable them at the identity provider too)."""
    if not yes:
        click.confirm(f"Erase ALL data of tenant {name!r}? This cannot be undone", abort=True)
    try:
        counts = _run(lambda ctx: erase_tenant(ctx, name, cli_actor()))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"erased tenant {name}: {json.dumps(counts)}")


@click.group()
def subject() -> None:
    """Export or erase what the audit log holds about one person (an actor such as oauth:<sub>)."""


@subject.command("export")
@click.argument("actor")
def subject_export(actor: str) -> None:
    click.echo(json.dumps(_run(lambda ctx: export_subject(ctx, actor)), indent=2))


@subject.command("erase")
@click.argument("actor")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def subject_erase(actor: str, yes: bool) -> None:
    if not yes:
        click.confirm(f"Erase audit subject data of {actor!r}?", abort=True)
    count = _run(lambda ctx: erase_subject(ctx, actor, cli_actor()))
    click.echo(f"erased subject data of {count} audit records")


@click.group()
def retention() -> None:
    """Retention of stored data."""


@retention.command("purge")
def retention_purge() -> None:
    """Apply every retention rule now (the server also does it every SECURE_AGENT_RETENTION__PURGE_INTERVAL_S)."""
    removed = _run(lambda ctx: purge_expired(PurgeContext(ctx.settings, ctx.store, ctx.audit)))
    click.echo(json.dumps(removed))


SECURITY_COMMANDS = (audit, tenant, subject, retention)
