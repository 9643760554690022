"""secure-agent: serve, keys, store, manifest, doctor."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from ..auth.api_keys import ApiKeyService
from ..auth.scopes import ALL_SCOPES, DEFAULT_KEY_SCOPES
from ..settings import Settings
from ..store.store import Store
from .envfiles import env_files
from .security import SECURITY_COMMANDS, cli_actor
from .store import parse_duration, store


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """secure-agent: an MCP server with a sandboxed workspace. Settings come from SECURE_AGENT_* env vars."""


@main.command()
@click.option("--host", help="Listen address (default from SECURE_AGENT_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Listen port (default from SECURE_AGENT_PORT, 8080).")
def serve(host: str | None, port: int | None) -> None:
    """Run the MCP server (embedded default: SQLite store, local runners)."""
    import uvicorn

    from ..app import create_app
    from ..observability.logging import setup_logging
    from ..security.server import uvicorn_options

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)
    app = create_app(settings, announce=True)
    # JSON logging from the first line: uvicorn must not install its own text formatters, and its
    # access log is replaced by the app's request line (which knows the tenant and MCP method).
    setup_logging(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # No Server banner, no X-Forwarded-* trust in uvicorn, keep-alive/header timeouts, size caps.
        **uvicorn_options(settings.limits),
    )


@main.group()
def keys() -> None:
    """Manage API keys (stored as salted hashes)."""


def _with_keys(fn):
    async def run():
        settings = Settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = Store(settings.store_url)
        try:
            await store.create_schema()
            return await fn(ApiKeyService(store))
        finally:
            await store.aclose()

    return asyncio.run(run())


@keys.command("create")
@click.option("--tenant", required=True, help="Tenant the key acts for (lowercase letters, digits, - _).")
@click.option("--name", default="cli", show_default=True, help="A label to recognise the key by.")
@click.option(
    "--scope", "scopes", multiple=True, type=click.Choice(ALL_SCOPES),
    help=f"Repeatable. Default: {' '.join(DEFAULT_KEY_SCOPES)}.",
)  # fmt: skip
def keys_create(tenant: str, name: str, scopes: tuple[str, ...]) -> None:
    """Create a key and print it once."""
    try:
        key, info = _with_keys(
            lambda svc: svc.create(tenant, name, scopes or DEFAULT_KEY_SCOPES, actor=cli_actor())
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created key {info.key_id} for tenant {info.tenant} with scopes {' '.join(info.scopes)}.")
    click.echo("Store it now; it cannot be shown again:")
    click.echo(key)


@keys.command("list")
@click.option("--tenant", help="Only this tenant's keys.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def keys_list(tenant: str | None, as_json: bool) -> None:
    """List keys (ids and metadata only; secrets are never stored)."""
    infos = _with_keys(lambda svc: svc.list(tenant))
    rows = [
        {"key_id": i.key_id, "tenant": i.tenant, "name": i.name, "scopes": list(i.scopes),
         "created_at": i.created_at.isoformat(), "revoked_at": i.revoked_at.isoformat() if i.revoked_at else None,
         "expires_at": i.expires_at.isoformat() if i.expires_at else None}
        for i in infos
    ]  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no keys")
    for info, r in zip(infos, rows, strict=True):
        state = "revoked" if r["revoked_at"] else "active" if info.active else "expired"
        if state == "active" and r["expires_at"]:
            state = f"active until {r['expires_at']}"
        click.echo(f"{r['key_id']}  {r['tenant']:<16} {r['name']:<16} {state:<8} {' '.join(r['scopes'])}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by id; every process refuses it from its next request on (within
    SECURE_AGENT_API_KEY_CACHE_TTL_S when that opt-in cache is on)."""
    try:
        info = _with_keys(lambda svc: svc.revoke(key_id, actor=cli_actor()))
    except KeyError as exc:
        raise click.ClickException(exc.args[0]) from exc
    click.echo(f"Revoked key {info.key_id} of tenant {info.tenant}.")


@keys.command("rotate")
@click.argument("key_id")
@click.option(
    "--grace", default="0", show_default=True, metavar="DURATION",
    help="Keep the old key working this long (e.g. 90s, 15m, 24h, 7d), then refuse it. 0: revoke it now.",
)  # fmt: skip
def keys_rotate(key_id: str, grace: str) -> None:
    """Replace a key with a new one (same tenant, name and scopes), print the new key once, and revoke
    the old one now or after --grace."""
    try:
        grace_s = parse_duration(grace)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--grace") from exc
    try:
        key, new, old = _with_keys(lambda svc: svc.rotate(key_id, grace_s=grace_s, actor=cli_actor()))
    except KeyError as exc:
        raise click.ClickException(exc.args[0]) from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created key {new.key_id} for tenant {new.tenant} with scopes {' '.join(new.scopes)} "
               f"(rotated from {old.key_id}).")  # fmt: skip
    if old.revoked_at is not None:
        click.echo(f"Revoked key {old.key_id} of tenant {old.tenant}.")
    else:
        click.echo(f"Key {old.key_id} of tenant {old.tenant} keeps working until {old.expires_at.isoformat()}, "
                   "then is refused.")  # fmt: skip
    click.echo("Store it now; it cannot be shown again:")
    click.echo(key)


@main.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
def manifest(output: Path | None) -> None:
    """Print the server manifest (mcp_config.json)."""
    from ..mcp.manifest import render_manifest

    text = render_manifest()
    if output:
        output.write_text(text)
    else:
        sys.stdout.write(text)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(as_json: bool) -> None:
    """Check this machine: kernel features, Landlock, seccomp, openat2, writable data dir."""
    from .doctor import render, run_checks

    checks = run_checks(Settings())
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        click.echo(render(checks))
    if any(c.status == "fail" for c in checks):
        sys.exit(1)


for _command in SECURITY_COMMANDS:  # audit, tenant, subject, retention
    main.add_command(_command)
main.add_command(store)  # store backup | restore
main.add_command(env_files)  # env-files: config/env/* generated from the settings model
