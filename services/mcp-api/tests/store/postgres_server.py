"""A real PostgreSQL for tests, started from the installed Debian server binaries in a temp dir.

`postgres_server` (session scope: one server per pytest worker) runs `initdb` + `postgres` on a free
loopback port with its unix socket in the temp dir, as `nobody` when the tests run as root (postgres
refuses root), and stops it at teardown. `postgres_url` gives each test an empty database of its own.
`make system-deps` installs the binaries; without them the tests skip, except under CI where they fail.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

STARTUP_TIMEOUT_S = 30.0
RUN_AS = "nobody"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    root: Path
    port: int
    process: subprocess.Popen
    user: str = "postgres"

    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def log_text(self) -> str:
        try:
            return (self.root / "postgres.log").read_text(errors="replace")
        except OSError as exc:
            return f"<no postgres log: {exc}>"

    async def create_database(self, name: str) -> str:
        import asyncpg

        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user=self.user, database="postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: roll back, disconnect, stop
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


def _as_postgres_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["setpriv", f"--reuid={RUN_AS}", f"--regid={pwd.getpwnam(RUN_AS).pw_gid}", "--clear-groups", *argv]


def start_postgres() -> PostgresServer:
    bin_dir = _bin_dir()
    if bin_dir is None:
        message = (
            "PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin): run `make system-deps`"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Not under pytest's tmp_path: its parents are root-only (0700) and postgres runs as nobody.
    root = Path(tempfile.mkdtemp(prefix="secure-agent-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        entry = pwd.getpwnam(RUN_AS)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    init = subprocess.run(
        _as_postgres_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                           "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
        cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
    port = _free_port()
    log = open(root / "postgres.log", "wb")  # noqa: SIM115 - closed right after the process starts
    process = subprocess.Popen(
        _as_postgres_user([
            str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200",
        ]),
        cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    server = PostgresServer(root=root, port=port, process=process)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = server.log_text()
            server.stop()
            pytest.fail(f"postgres exited with {process.returncode} at start-up:\n{text}")
        if _accepts(server):
            return server
        time.sleep(0.1)
    text = server.log_text()
    server.stop()
    pytest.fail(f"postgres did not accept connections within {STARTUP_TIMEOUT_S:.0f}s:\n{text}")


def _accepts(server: PostgresServer) -> bool:
    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(
                host="127.0.0.1", port=server.port, user=server.user, database="postgres", timeout=2
            )
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL (SQLAlchemy asyncpg URL)."""
    return await postgres_server.create_database("t_" + secrets.token_hex(6))
