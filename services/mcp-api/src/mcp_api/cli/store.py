"""secure-agent store backup | restore: a consistent copy of the store, and putting one back.

SQLite (the embedded default): the backup uses SQLite's online backup API, so it is consistent while a
server keeps writing; it is checked (integrity, secure-agent tables, a known schema revision) and moved
into place atomically (temp file + rename), never over an existing file without --force. A restore
checks the backup the same way before touching anything, refuses while another process has the store
open (the WAL "DMS" lock every SQLite connection holds on `<db>-shm`, see sqlite.org/walformat.html),
keeps the current database as `<db>.<UTC time>.bak` and swaps the restored file in with one rename.

PostgreSQL (SECURE_AGENT_DATABASE_URL): `pg_dump --format=custom` / `pg_restore`, if installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import glob
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from ..settings import Settings

SQLITE_MAGIC = b"SQLite format 3\x00"
REQUIRED_TABLES = ("alembic_version", "api_keys", "audit_events")
# Byte 128 of the -shm file: every connection to a WAL database holds a shared lock on it.
_WAL_DMS_LOCK = 128
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `15m`, `24h`, `7d` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: use a number with s, m, h or d (e.g. 15m, 24h, 7d)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


class StoreError(click.ClickException):
    """A refusal with a clear reason; nothing was changed."""


@dataclass
class Summary:
    revision: str
    keys: int
    audit_records: int
    conversations: int

    def __str__(self) -> str:
        return (
            f"schema {self.revision}, {self.keys} API keys, {self.audit_records} audit records, "
            f"{self.conversations} conversations"
        )


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    from ..store.migrate import alembic_config

    return {r.revision for r in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


# --------------------------------------------------------------------------------------------- SQLite


def sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if parsed.database in (None, "", ":memory:"):
        raise StoreError("the store is an in-memory SQLite database: nothing to back up or restore")
    return Path(parsed.database)


def sqlite_in_use(db: Path) -> bool:
    """Whether another process has the database open (call it before this process opens it: POSIX
    locks are per process, so this process's own connections never count)."""
    shm = Path(f"{db}-shm")
    try:
        fd = os.open(shm, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _WAL_DMS_LOCK)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, _WAL_DMS_LOCK)
        return False
    finally:
        os.close(fd)


def _check(conn: sqlite3.Connection, label: str) -> Summary:
    """Refuse anything that is not an intact secure-agent store of a schema revision this release knows."""
    try:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise StoreError(f"{label} is damaged (integrity_check: {verdict})")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [t for t in REQUIRED_TABLES if t not in tables]
        if missing:
            raise StoreError(f"{label} is not a secure-agent store (no {', '.join(missing)} table)")
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        count = lambda table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731,S608  # nosec B608 - table names are our constants
        summary = Summary(
            revision=row[0] if row else "",
            keys=count("api_keys"),
            audit_records=count("audit_events"),
            conversations=count("agent_conversations") if "agent_conversations" in tables else 0,
        )
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{label} is not a readable SQLite database: {exc}") from exc
    if summary.revision not in known_revisions():
        raise StoreError(
            f"{label} has schema revision {summary.revision or 'none'}, which this release does not know "
            "(made by a newer release?): restore it with that release"
        )
    return summary


def _new_private_file(directory: Path, stem: str) -> Path:
    path = directory / f".{stem}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(source: sqlite3.Connection, tmp: Path, label: str) -> Summary:
    """Online backup of `source` into `tmp`, as a self-contained rollback-journal file, then checked."""
    dest = sqlite3.connect(tmp)
    try:
        source.backup(dest)  # one step: one read transaction, so a consistent snapshot
        dest.execute("PRAGMA journal_mode=DELETE")  # no -wal/-shm beside a backup; the server sets WAL
        summary = _check(dest, label)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{label} is not a readable SQLite database: {exc}") from exc
    finally:
        dest.close()
    _fsync(tmp)
    return summary


def sqlite_backup(db: Path, target: Path, *, force: bool) -> Summary:
    if not db.is_file():
        raise StoreError(f"no store at {db}: nothing to back up (check SECURE_AGENT_DATA_DIR)")
    if target.is_dir():
        raise StoreError(f"{target} is a directory: give the backup file's path")
    if target.exists() and not force:
        raise StoreError(f"{target} exists: pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_private_file(target.parent, target.name)
    try:
        source = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30)
        try:
            summary = _copy(source, tmp, f"the store at {db}")
        finally:
            source.close()
        if target.exists() and not force:
            raise StoreError(f"{target} exists: pass --force to overwrite it")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(target.parent)
    return summary


def sqlite_restore(source: Path, db: Path) -> tuple[Summary, Path | None]:
    if not source.exists():
        raise StoreError(f"no backup at {source}")
    if not source.is_file():
        raise StoreError(f"{source} is not a file")
    with open(source, "rb") as handle:
        if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise StoreError(f"{source} is not a SQLite database (not a secure-agent store backup)")
    in_use = (
        f"the store at {db} is open in another process (a running 'secure-agent serve'?): "
        "stop it, then restore"
    )
    if sqlite_in_use(db):
        raise StoreError(in_use)
    db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = _new_private_file(db.parent, db.name)
    try:
        try:
            backup = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise StoreError(f"{source} cannot be opened: {exc}") from exc
        try:
            summary = _copy(backup, tmp, str(source))
        finally:
            backup.close()
        previous = None
        if db.exists():
            with contextlib.suppress(sqlite3.Error):  # a damaged store is kept as it is
                current = sqlite3.connect(f"file:{db}?mode=rw", uri=True)
                try:
                    current.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    current.close()  # the last connection: SQLite removes -wal and -shm
            if sqlite_in_use(db):
                raise StoreError(in_use)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            previous = db.with_name(f"{db.name}.{stamp}.bak")
            try:
                os.link(db, previous)  # the current file stays in place until the rename below
            except OSError:  # a filesystem without hard links
                shutil.copy2(db, previous)
            for suffix in ("-wal", "-shm"):  # leftovers of a damaged store go with it, never to the new one
                if Path(f"{db}{suffix}").exists():
                    os.replace(f"{db}{suffix}", f"{previous}{suffix}")
        os.replace(tmp, db)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(db.parent)
    return summary, previous


# ----------------------------------------------------------------------------------------- PostgreSQL


def _pg_tool(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_pg_major, reverse=True)), None
    )
    if not found:
        raise StoreError(
            f"{name} is not installed: install the PostgreSQL client tools (Debian/Ubuntu: apt-get install "
            "postgresql-client, of the server's major version or newer), or use your platform's backups "
            "(docs/backup-and-recovery.md)"
        )
    return found


def _pg_major(path: str) -> int:
    return int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The libpq URL of a SQLAlchemy one (no driver suffix) and an env carrying the password, which
    stays off the command line."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run_tool(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StoreError(f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _pg_check_dump(pg_restore: str, dump: Path, env: dict[str, str], label: str) -> str:
    try:
        listing = _run_tool([pg_restore, "--list", str(dump)], env)
    except StoreError as exc:
        raise StoreError(f"{label} is not a pg_dump archive: {exc.message}") from exc
    tables = set(re.findall(r"\bTABLE \S+ (\w+) ", listing))
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    if missing:
        raise StoreError(f"{label} is not a secure-agent store dump (no {', '.join(missing)} table)")
    data = _run_tool([pg_restore, "--data-only", "--table=alembic_version", "--file=-", str(dump)], env)
    match = re.search(r"^COPY \S*alembic_version .*?;\n(\w+)\n", data, re.M)
    revision = match.group(1) if match else ""
    if revision not in known_revisions():
        raise StoreError(
            f"{label} has schema revision {revision or 'none'}, which this release does not know "
            "(made by a newer release?): restore it with that release"
        )
    return revision


def pg_backup(url: str, target: Path, *, force: bool) -> str:
    pg_dump, pg_restore = _pg_tool("pg_dump"), _pg_tool("pg_restore")
    if target.exists() and not force:
        raise StoreError(f"{target} exists: pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    libpq, env = _libpq(url)
    tmp = _new_private_file(target.parent, target.name)
    try:
        _run_tool([pg_dump, "--format=custom", f"--file={tmp}", f"--dbname={libpq}"], env)
        revision = _pg_check_dump(pg_restore, tmp, env, "the database")
        _fsync(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return revision


async def _pg_other_connections(url: str) -> int:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            query = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            return (await conn.execute(text(query))).scalar_one()
    finally:
        await engine.dispose()


def pg_restore(url: str, source: Path) -> tuple[str, Path]:
    pg_dump, pg_restore_ = _pg_tool("pg_dump"), _pg_tool("pg_restore")
    if not source.is_file():
        raise StoreError(f"no backup at {source}")
    libpq, env = _libpq(url)
    revision = _pg_check_dump(pg_restore_, source, env, str(source))
    others = asyncio.run(_pg_other_connections(url))
    if others:
        raise StoreError(
            f"the database has {others} other connection(s) (a running 'secure-agent serve'?): "
            "stop them, then restore"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    previous = source.with_name(f"{make_url(url).database}.{stamp}.bak")
    os.close(os.open(previous, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # key hashes: not world-readable
    _run_tool([pg_dump, "--format=custom", f"--file={previous}", f"--dbname={libpq}"], env)
    _run_tool(
        [pg_restore_, "--clean", "--if-exists", "--no-owner", "--single-transaction", "--exit-on-error",
         f"--dbname={libpq}", str(source)],
        env,
    )  # fmt: skip
    return revision, previous


# ------------------------------------------------------------------------------------------------ CLI


async def _audit_restore(settings: Settings, source: Path) -> None:
    """Open the restored store as the server will (migrating it forward), and record the restore at
    the end of its audit chain."""
    from ..security.audit import AuditLog
    from ..security.pii import StorageRedactor
    from ..store.store import Store
    from .security import cli_actor

    store_ = Store(settings.store_url)
    try:
        await store_.create_schema()
        audit = AuditLog(store_, StorageRedactor(settings.privacy))
        await audit.record("store.restore", cli_actor(), None, "store", {"from": source.name})
    finally:
        await store_.aclose()


@click.group()
def store() -> None:
    """Back up and restore the store (keys, audit log, conversations): SQLite or PostgreSQL."""


@store.command("backup")
@click.option("--to", "target", required=True, type=click.Path(path_type=Path), help="Backup file to write.")
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
def store_backup(target: Path, force: bool) -> None:
    """Write a consistent copy of the store while the server runs (SQLite: online backup API, mode 0600;
    PostgreSQL: pg_dump --format=custom)."""
    settings = Settings()
    db = sqlite_file(settings.store_url)
    if db is None:
        revision = pg_backup(settings.store_url, target, force=force)
        click.echo(f"Backed up the PostgreSQL store (schema {revision}) to {target} (pg_dump custom format).")
        return
    summary = sqlite_backup(db, target, force=force)
    click.echo(f"Backed up {db} to {target}: {summary}; integrity ok.")


@store.command("restore")
@click.option(
    "--from", "source", required=True, type=click.Path(path_type=Path), help="Backup file to restore."
)
@click.option("--yes", is_flag=True, help="Do not ask before replacing an existing store.")
def store_restore(source: Path, yes: bool) -> None:
    """Replace the store with a backup, after checking it is one; the server must be stopped. The
    current store is kept beside it (SQLite: <db>.<time>.bak; PostgreSQL: a dump next to the backup)."""
    settings = Settings()
    db = sqlite_file(settings.store_url)
    if db is None:
        if not yes:
            click.confirm(f"Replace the PostgreSQL store's contents with {source}?", abort=True)
        revision, previous = pg_restore(settings.store_url, source)
        click.echo(f"Restored the PostgreSQL store (schema {revision}) from {source}.")
        click.echo(f"The database as it was before: {previous}")
    else:
        if db.exists() and not yes:
            click.confirm(f"Replace the store at {db} with {source}?", abort=True)
        summary, previous = sqlite_restore(source, db)
        click.echo(f"Restored {db} from {source}: {summary}.")
        if previous:
            click.echo(f"The store as it was before: {previous}")
    asyncio.run(_audit_restore(settings, source))
    click.echo("Check it: secure-agent audit verify")
