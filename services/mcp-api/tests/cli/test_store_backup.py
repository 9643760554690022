"""`secure-agent store backup | restore`.

SQLite: backups taken while a real `secure-agent serve` keeps writing (agent conversations, audit
records) are consistent, restore brings back exactly what a backup held (keys, conversations with their
transcripts, an audit chain that verifies), keeps the replaced store as a .bak, and refuses - changing
nothing - while the server has the store open, or when the file is missing, not SQLite, a foreign
SQLite database, or of a schema revision this release does not know. PostgreSQL: the same round trip
through pg_dump/pg_restore on a real server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from mcp_api.cli import main
from model_servers import ScriptedModel, agent_env
from store.postgres_server import PostgresServer, postgres_server  # noqa: F401 - fixture

KEY = "sa_backupdrill1_" + "Xq7-pL2_vN9kR4tY8wZ3mB6cF1hJ5sD0"


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    for name in [k for k in os.environ if k.startswith("SECURE_AGENT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SECURE_AGENT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".tmp", ".bak")))


# ------------------------------------------------------------------------------------ a live server


class Server:
    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base_url = f"http://localhost:{self.port}"
        self.log = data.parent / f"server-{self.port}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mcp_api", "serve", "--port", str(self.port)],
                env={**env, "PYTHONUNBUFFERED": "1"}, cwd=data.parent, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"/health did not answer:\n{self.log.read_text()}")

    def call(self, tool: str, **arguments) -> dict:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": tool, "arguments": arguments, "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "backup-test", "version": "1"}}}}  # fmt: skip
        headers = {
            "authorization": f"Bearer {KEY}", "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": tool,
        }  # fmt: skip
        r = httpx.post(f"{self.base_url}/mcp", json=body, headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        if r.headers["content-type"].startswith("text/event-stream"):
            msgs = [json.loads(x[5:]) for x in r.text.splitlines() if x.startswith("data:") and x[5:].strip()]
            return [m for m in msgs if m.get("id") == 1][-1]["result"]
        return r.json()["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def conversations_in(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(
            conn.execute(
                "SELECT c.id, count(m.id) FROM agent_conversations c "
                "LEFT JOIN agent_messages m ON m.conversation_id = c.id GROUP BY c.id"
            ).fetchall()
        )
    finally:
        conn.close()


@pytest.mark.integration
def test_backup_while_the_server_writes_then_restore(data: Path):
    model = ScriptedModel().start()  # answers every agent_run ("script exhausted"): each run writes
    env = {**os.environ, "SECURE_AGENT_DEV_API_KEY": KEY, **agent_env(model)}
    server = Server(data, env)
    db = data / "secure-agent.db"
    backups = data.parent / "backups"
    stop_writing = threading.Event()
    written: list[str] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            while not stop_writing.is_set():
                result = server.call("agent_run", prompt=f"run {len(written)}")
                assert result["structuredContent"]["status"] == "completed", result
                written.append(result["structuredContent"]["conversation_id"])
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test
            errors.append(exc)

    thread = threading.Thread(target=writer)
    try:
        thread.start()
        while len(written) < 2 and thread.is_alive():
            time.sleep(0.05)
        taken = []
        finished_before: list[list[str]] = []  # runs completed before each backup started
        for n in range(3):  # online, while the writer keeps going
            finished_before.append(list(written))
            result = cli("store", "backup", "--to", str(backups / f"b{n}.db"))
            assert result.exit_code == 0, result.output
            assert "integrity ok" in result.output
            taken.append(result.output)
            time.sleep(0.3)
        busy = cli("store", "restore", "--from", str(backups / "b0.db"), "--yes")
        stop_writing.set()
        thread.join(60)
        assert not errors, errors
        # While the server holds the store, restore refuses and touches nothing.
        assert busy.exit_code != 0 and "open in another process" in busy.output
        assert leftovers(data) == []
        assert server.call("agent_run", prompt="still serving")["structuredContent"]["status"] == "completed"
    finally:
        stop_writing.set()
        thread.join(60)
        server.stop()
        model.stop()

    final = conversations_in(db)
    assert len(final) == len(written) + 1 >= 4
    backup = backups / "b1.db"
    assert os.stat(backup).st_mode & 0o777 == 0o600
    saved = conversations_in(backup)
    assert 2 <= len(saved) < len(final) and set(saved) <= set(final)
    # A consistent snapshot: every run that had finished before the backup began is there whole; a
    # run still going may be there with the messages committed so far (a conversation is created
    # when its run starts, its messages are added as the run goes).
    assert finished_before[1] and set(finished_before[1]) <= set(saved)
    for conversation_id in finished_before[1]:
        assert saved[conversation_id] >= 1, conversation_id
    with sqlite3.connect(backup) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # self-contained file
    keys_before = cli("keys", "list", "--json").output

    restored = cli("store", "restore", "--from", str(backup), "--yes")
    assert restored.exit_code == 0, restored.output
    assert f"{len(saved)} conversations" in restored.output
    [bak] = [p for p in data.iterdir() if p.name.endswith(".bak")]
    assert f"The store as it was before: {bak}" in restored.output
    assert conversations_in(bak) == final  # the replaced store is kept whole
    assert conversations_in(db) == saved
    verified = cli("audit", "verify")
    assert verified.exit_code == 0 and "audit log intact" in verified.output, verified.output
    assert json.loads(cli("audit", "list", "--limit", "1").output)["action"] == "store.restore"
    assert cli("keys", "list", "--json").output == keys_before  # the dev key, as at backup time

    # A server on the restored store serves the conversations of the backup, transcripts included.
    model = ScriptedModel().start()
    server = Server(data, {**os.environ, "SECURE_AGENT_DEV_API_KEY": KEY, **agent_env(model)})
    try:
        listed = server.call("conversation_list")["structuredContent"]["conversations"]
        assert {c["conversation_id"] for c in listed} == set(saved)
        some = next(iter(saved))
        transcript = server.call("conversation_get", conversation_id=some)["structuredContent"]["transcript"]
        assert len(transcript) == saved[some] and transcript[0]["role"] == "user"
    finally:
        server.stop()
        model.stop()


def make_store(data: Path) -> Path:
    created = cli("keys", "create", "--tenant", "acme", "--scope", "exec")
    assert created.exit_code == 0, created.output
    return data / "secure-agent.db"


def test_backup_refuses_to_overwrite_without_force(data: Path, tmp_path: Path):
    missing = cli("store", "backup", "--to", str(tmp_path / "b.db"))
    assert missing.exit_code != 0 and "no store at" in missing.output and not (tmp_path / "b.db").exists()
    make_store(data)
    target = tmp_path / "b.db"
    target.write_text("precious")
    refused = cli("store", "backup", "--to", str(target))
    assert refused.exit_code != 0 and "exists: pass --force" in refused.output
    assert target.read_text() == "precious" and leftovers(tmp_path) == []
    forced = cli("store", "backup", "--to", str(target), "--force")
    assert forced.exit_code == 0 and "1 API keys" in forced.output
    assert target.read_bytes().startswith(b"SQLite format 3\x00")


def _foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('not ours')")
    conn.close()


def _future_revision(data: Path, path: Path) -> None:
    assert cli("store", "backup", "--to", str(path)).exit_code == 0
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no backup at"),
        ("directory", "is not a file"),
        ("text", "is not a SQLite database"),
        ("foreign", "is not a secure-agent store (no alembic_version, api_keys, audit_events table)"),
        ("future", "has schema revision 9999, which this release does not know"),
        ("truncated", "is not a readable SQLite database"),
    ],
)
def test_restore_refuses_what_is_not_a_secure_agent_backup(
    data: Path, tmp_path: Path, case: str, message: str
):
    db = make_store(data)
    source = tmp_path / f"{case}.db"
    if case == "directory":
        source.mkdir()
    elif case == "text":
        source.write_text("hello, not a database\n" * 10)
    elif case == "foreign":
        _foreign_sqlite(source)
    elif case == "future":
        _future_revision(data, source)
    elif case == "truncated":
        assert cli("store", "backup", "--to", str(source)).exit_code == 0
        source.write_bytes(source.read_bytes()[:5000])
    before, keys_before = digest(db), cli("keys", "list", "--json").output

    refused = cli("store", "restore", "--from", str(source), "--yes")
    assert refused.exit_code != 0 and message in refused.output, refused.output
    assert digest(db) == before and leftovers(data) == []
    assert cli("keys", "list", "--json").output == keys_before
    assert cli("audit", "verify").exit_code == 0


def test_restore_into_an_empty_data_dir_and_over_a_damaged_store(data: Path, tmp_path: Path):
    db = make_store(data)
    backup = tmp_path / "b.db"
    assert cli("store", "backup", "--to", str(backup)).exit_code == 0
    keys = cli("keys", "list", "--json").output
    # Damaged: the current store is garbage; restore still works and keeps it as the .bak.
    db.write_bytes(b"garbage" * 100)
    restored = cli("store", "restore", "--from", str(backup), "--yes")
    assert restored.exit_code == 0, restored.output
    [bak] = [p for p in data.iterdir() if p.name.endswith(".bak")]
    assert bak.read_bytes() == b"garbage" * 100
    assert cli("keys", "list", "--json").output == keys and cli("audit", "verify").exit_code == 0
    # Gone: nothing to replace, no .bak.
    for p in list(data.iterdir()):
        p.unlink()
    data.rmdir()
    again = cli("store", "restore", "--from", str(backup))  # no existing store: no question asked
    assert again.exit_code == 0, again.output
    assert "as it was before" not in again.output
    assert cli("keys", "list", "--json").output == keys and cli("audit", "verify").exit_code == 0


def test_restore_asks_before_replacing_a_store(data: Path, tmp_path: Path):
    db = make_store(data)
    backup = tmp_path / "b.db"
    assert cli("store", "backup", "--to", str(backup)).exit_code == 0
    before = digest(db)
    declined = CliRunner().invoke(main, ["store", "restore", "--from", str(backup)], input="n\n")
    assert declined.exit_code != 0 and digest(db) == before and leftovers(data) == []


def test_postgresql_round_trip(postgres_server: PostgresServer, tmp_path: Path, monkeypatch):  # noqa: F811
    postgres_url = asyncio.run(postgres_server.create_database("b_" + secrets.token_hex(6)))
    for name in [k for k in os.environ if k.startswith("SECURE_AGENT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SECURE_AGENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SECURE_AGENT_DATABASE_URL", postgres_url)
    assert cli("keys", "create", "--tenant", "acme", "--scope", "exec").exit_code == 0
    keys = cli("keys", "list", "--json").output
    dump = tmp_path / "pg.dump"
    backed_up = cli("store", "backup", "--to", str(dump))
    assert backed_up.exit_code == 0, backed_up.output
    assert cli("store", "backup", "--to", str(dump)).exit_code != 0  # no overwrite without --force
    assert cli("keys", "create", "--tenant", "late", "--scope", "exec").exit_code == 0

    foreign = tmp_path / "foreign.db"
    _foreign_sqlite(foreign)
    refused = cli("store", "restore", "--from", str(foreign), "--yes")
    assert refused.exit_code != 0 and "is not a pg_dump archive" in refused.output
    assert "late" in cli("keys", "list").output  # untouched
    # A client still connected (a server that was not stopped): refused, nothing changed.
    libpq = postgres_url.replace("+asyncpg", "")
    holder = subprocess.Popen(["psql", libpq, "-c", "SELECT pg_sleep(30)"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not asyncio.run(_sleeping(postgres_server, libpq.rsplit("/", 1)[1])):
            assert holder.poll() is None and time.monotonic() < deadline, "psql did not connect"
            time.sleep(0.1)
        busy = cli("store", "restore", "--from", str(dump), "--yes")
    finally:
        holder.kill()
        holder.wait()
        while asyncio.run(_sleeping(postgres_server, libpq.rsplit("/", 1)[1], terminate=True)):
            time.sleep(0.1)  # the server notices a vanished client only when told
    assert busy.exit_code != 0 and "1 other connection(s)" in busy.output, busy.output
    assert cli("keys", "create", "--tenant", "late2", "--scope", "exec").exit_code == 0

    restored = cli("store", "restore", "--from", str(dump), "--yes")
    assert restored.exit_code == 0, restored.output
    assert cli("keys", "list", "--json").output == keys  # the key created after the backup is gone
    verified = cli("audit", "verify")
    assert verified.exit_code == 0 and "audit log intact" in verified.output, verified.output
    previous = sorted(p for p in tmp_path.iterdir() if p.name.endswith(".bak"))[-1]
    assert previous.stat().st_size > 0 and previous.stat().st_mode & 0o777 == 0o600


async def _sleeping(server: PostgresServer, database: str, terminate: bool = False) -> bool:
    """Whether a client is connected to `database` (running pg_sleep); `terminate` ends it first."""
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", port=server.port, user=server.user, database="postgres")
    try:
        where = "WHERE datname = $1 AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
        if terminate:
            await conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity {where}", database)
        return await conn.fetchval(f"SELECT count(*) FROM pg_stat_activity {where}", database) > 0
    finally:
        await conn.close()
