"""Per-tenant (and per-subject) export and erasure (GDPR articles 15, 17 and 20).

Every store of tenant data registers a `TenantData` source with an `export` and an `erase`
function, so `secure-agent tenant export|erase` covers whatever exists: API keys, the tenant's
workspaces on disk (`data_dir/workspaces/<tenant>`), and its audit records here; conversations and
transcripts register themselves when they land.

Erasure deletes keys and files outright. Audit records are not deleted (the log is append-only and
hash-chained): their subject data (actor, tenant, target, details) is erased in place, and the
`tenant.erase` record that does it is chained like any other, so `audit verify` still passes and
shows that, when and by whom an erasure happened, without saying whose (its `meta` carries the
tenant's keyed hash, as log lines do, and the counts).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_runner.observability import context as log_context

from ..auth.api_keys import validate_tenant
from .audit import AuditLog, now_iso

if TYPE_CHECKING:
    from ..auth.api_keys import ApiKeyService
    from ..settings import Settings
    from ..store.store import Store


@dataclass
class PrivacyContext:
    settings: Settings
    store: Store
    keys: ApiKeyService
    audit: AuditLog


@dataclass(frozen=True)
class TenantData:
    name: str
    # Adds the tenant's data to the archive (`add(name, bytes)`, or files via the tar itself); returns a summary.
    export: Callable[[PrivacyContext, str, tarfile.TarFile], Awaitable[Any]]
    erase: Callable[[PrivacyContext, str], Awaitable[int]]  # returns how many items were removed


_SOURCES: dict[str, TenantData] = {}


def register_tenant_data(source: TenantData) -> None:
    _SOURCES[source.name] = source


def sources() -> list[TenantData]:
    return list(_SOURCES.values())


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def _add_json(tar: tarfile.TarFile, name: str, value: Any) -> None:
    _add_bytes(tar, name, json.dumps(value, indent=2, default=str).encode())


async def export_tenant(ctx: PrivacyContext, tenant: str, output: Path, actor: str) -> dict[str, Any]:
    """Write a .tar.gz with everything stored about `tenant`; returns the manifest."""
    validate_tenant(tenant)
    manifest: dict[str, Any] = {"tenant": tenant, "exported_at": now_iso(), "sources": {}}
    output.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for source in sources():
            manifest["sources"][source.name] = await source.export(ctx, tenant, tar)
        _add_json(tar, "manifest.json", manifest)
    await ctx.audit.record(
        "tenant.export", actor, tenant, f"tenant:{tenant}", {"sources": sorted(manifest["sources"])}
    )
    return manifest


async def erase_tenant(ctx: PrivacyContext, tenant: str, actor: str) -> dict[str, int]:
    """Erase everything stored about `tenant`; the audit log keeps a chained record that it happened."""
    validate_tenant(tenant)
    counts = {source.name: await source.erase(ctx, tenant) for source in sources() if source.name != "audit"}
    counts["audit"] = await ctx.audit.redact(
        "tenant.erase", actor, tenant=tenant,
        meta={"tenant_hash": log_context.hash_tenant(tenant), "erased": dict(counts)},
    )  # fmt: skip
    return counts


async def export_subject(ctx: PrivacyContext, actor: str) -> list[dict]:
    """Audit records made by one person (an OAuth subject `oauth:<sub>`, or a key `key:<id>` / CLI user)."""
    return await ctx.audit.events(actor=actor)


async def erase_subject(ctx: PrivacyContext, actor: str, by: str) -> int:
    return await ctx.audit.redact(
        "subject.erase", by, actor_filter=actor, meta={"subject_hash": log_context.hash_tenant(actor)}
    )


# --- built-in sources -----------------------------------------------------------------------------------
async def _export_keys(ctx: PrivacyContext, tenant: str, tar: tarfile.TarFile) -> dict:
    keys = [
        {"key_id": k.key_id, "name": k.name, "scopes": list(k.scopes), "created_at": k.created_at,
         "revoked_at": k.revoked_at, "expires_at": k.expires_at}
        for k in await ctx.keys.list(tenant)
    ]  # fmt: skip
    _add_json(tar, "api_keys.json", keys)
    return {
        "count": len(keys),
        "note": "key secrets are never stored; only their salted hashes, not exported",
    }


async def _erase_keys(ctx: PrivacyContext, tenant: str) -> int:
    return await ctx.keys.delete_tenant(tenant)


async def _export_audit(ctx: PrivacyContext, tenant: str, tar: tarfile.TarFile) -> dict:
    events = await ctx.audit.events(tenant=tenant)
    _add_json(tar, "audit.json", events)
    return {"count": len(events)}


async def _erase_audit(ctx: PrivacyContext, tenant: str) -> int:  # done last by erase_tenant itself
    return 0


def _tenant_dir(ctx: PrivacyContext, tenant: str) -> Path:
    return ctx.settings.workspaces_dir / validate_tenant(tenant)


async def _export_workspaces(ctx: PrivacyContext, tenant: str, tar: tarfile.TarFile) -> dict:
    root = _tenant_dir(ctx, tenant)
    files = 0
    if root.is_dir():
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            rel = Path(dirpath).relative_to(root)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                st = path.lstat()
                if not path.is_file() or path.is_symlink():
                    continue  # symlinks, FIFOs and devices are not content; never followed
                with open(path, "rb") as handle:  # noqa: ASYNC230 - CLI/job path, small files
                    info = tar.gettarinfo(arcname=str(Path("workspaces") / rel / name), fileobj=handle)
                    info.mode = st.st_mode & 0o644
                    tar.addfile(info, handle)
                files += 1
            dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
    return {"files": files, "root": f"workspaces/{tenant}"}


async def _erase_workspaces(ctx: PrivacyContext, tenant: str) -> int:
    root = _tenant_dir(ctx, tenant)
    if not root.exists():
        return 0
    count = sum(len(files) for _, _, files in os.walk(root, followlinks=False))
    shutil.rmtree(root)  # does not follow symlinks
    return count


register_tenant_data(TenantData("api_keys", _export_keys, _erase_keys))
register_tenant_data(TenantData("workspaces", _export_workspaces, _erase_workspaces))
register_tenant_data(TenantData("audit", _export_audit, _erase_audit))
