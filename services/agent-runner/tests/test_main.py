"""The `agent-runner serve` command: token intake, socket, signals, parent death."""

from __future__ import annotations

import ctypes
import io
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from agent_runner import __main__ as cli

pytestmark = pytest.mark.timeout(60)

TOKEN = "tok-" + "x" * 28


# --- token intake ---------------------------------------------------------------------------


def test_token_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{TOKEN}\r\nignored second line\n"))
    assert cli.read_token(True, None) == TOKEN


def test_token_from_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert cli.read_token(False, str(path)) == TOKEN
    with pytest.raises(cli.StartupError, match="cannot read --token-file"):
        cli.read_token(False, str(tmp_path / "missing"))


def test_token_from_env_is_removed_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.TOKEN_ENV, TOKEN)
    assert cli.read_token(False, None) == TOKEN
    assert cli.TOKEN_ENV not in os.environ


def test_stdin_wins_over_env_and_env_is_still_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.TOKEN_ENV, "env-token-should-not-be-used")
    monkeypatch.setattr(sys, "stdin", io.StringIO(TOKEN + "\n"))
    assert cli.read_token(True, None) == TOKEN
    assert cli.TOKEN_ENV not in os.environ


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "no token: pass --token-stdin"),
        ("short", "has 5 characters; use at least 16"),
        ("with space in the token value", "printable ASCII without spaces"),
        ("non-ascii-tokén-0123456789", "printable ASCII"),
    ],
)
def test_bad_tokens_refused(monkeypatch: pytest.MonkeyPatch, value: str | None, message: str) -> None:
    monkeypatch.delenv(cli.TOKEN_ENV, raising=False)
    if value is not None:
        monkeypatch.setenv(cli.TOKEN_ENV, value)
    with pytest.raises(cli.StartupError, match=message):
        cli.read_token(False, None)


# --- sockets --------------------------------------------------------------------------------


def test_unix_socket_is_private_and_removed(short_tmp: Path) -> None:
    path = str(short_tmp / "r.sock")
    listener = cli.bind_unix(path)
    try:
        mode = os.lstat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    finally:
        listener.close()
    assert not os.path.exists(path)


def test_stale_socket_replaced_live_one_refused(short_tmp: Path) -> None:
    path = str(short_tmp / "r.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # bound but nobody listening: left behind by a killed runner
    listener = cli.bind_unix(path)
    try:
        with pytest.raises(cli.StartupError, match="in use by a running server"):
            cli.bind_unix(path)
    finally:
        listener.close()


def test_socket_path_problems(short_tmp: Path) -> None:
    regular = short_tmp / "file"
    regular.write_text("x")
    with pytest.raises(cli.StartupError, match="exists and is not a socket"):
        cli.bind_unix(str(regular))
    with pytest.raises(cli.StartupError, match="cannot listen on --uds"):
        cli.bind_unix(str(short_tmp / ("x" * 120)))
    with pytest.raises(cli.StartupError, match="cannot listen on --uds"):
        cli.bind_unix(str(short_tmp / "missing-dir" / "s"))


def test_close_leaves_a_newer_socket_alone(short_tmp: Path) -> None:
    path = str(short_tmp / "r.sock")
    listener = cli.bind_unix(path)
    os.unlink(path)
    newer = socket.socket(socket.AF_UNIX)
    newer.bind(path)
    try:
        listener.close()
        assert os.path.exists(path)
    finally:
        newer.close()
    os.unlink(path)
    listener.close()  # already gone: fine


def test_tcp_listener() -> None:
    listener = cli.bind_tcp("127.0.0.1", 0)
    try:
        assert listener.sock.getsockname()[0] == "127.0.0.1"
    finally:
        listener.close()
    with pytest.raises(cli.StartupError, match="cannot listen on 203.0.113.1"):
        cli.bind_tcp("203.0.113.1", 1)


# --- argument handling ----------------------------------------------------------------------


def test_usage_errors(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["serve", "--workspace", str(root), "--workspace-id", "w"]
    for argv, message in [
        ([*base, "--host", "127.0.0.1"], "--host needs --port"),
        ([*base, "--uds", "/tmp/x.sock", "--port", "1"], "--port needs --host"),
        (base, "one of the arguments --uds --host is required"),
    ]:
        with pytest.raises(SystemExit) as excinfo:
            cli.main(argv)
        assert excinfo.value.code == 2
        assert message in capsys.readouterr().err


def test_startup_errors_exit_2(tmp_path: Path, short_tmp: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv(cli.TOKEN_ENV, TOKEN)
    argv = [
        "serve",
        "--workspace",
        str(tmp_path / "missing"),
        "--workspace-id",
        "w",
        "--uds",
        str(short_tmp / "s"),
    ]
    assert cli.main(argv) == 2
    assert "is not an existing directory" in capsys.readouterr().err
    assert not (short_tmp / "s").exists()


def test_workspace_open_failure_is_a_startup_error(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "create_app", _raise_oserror)
    with pytest.raises(cli.StartupError, match="cannot open workspace"):
        cli.build_app(str(root), TOKEN, "w", "auto")


def _raise_oserror(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    raise PermissionError(13, "Permission denied")


# --- serving in-process (covers serve(); signals go to this process) ------------------------


def test_main_serves_until_sigterm(root: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uds = str(short_tmp / "in-process.sock")
    token_file = short_tmp / "token"
    token_file.write_text(TOKEN + "\n")
    results: dict[str, object] = {}

    def client() -> None:
        deadline = time.monotonic() + 20
        while not os.path.exists(uds) and time.monotonic() < deadline:
            time.sleep(0.02)
        results["mode"] = stat.S_IMODE(os.lstat(uds).st_mode)
        transport = httpx.HTTPTransport(uds=uds)
        with httpx.Client(transport=transport, base_url="http://runner") as http:
            for _ in range(100):
                try:
                    response = http.get("/v1/health", headers={"Authorization": f"Bearer {TOKEN}"})
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            results["health"] = response.json()
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=client)
    thread.start()
    code = cli.main(
        [
            "serve",
            "--workspace",
            str(root),
            "--workspace-id",
            "inproc",
            "--uds",
            uds,
            "--token-file",
            str(token_file),
        ]
    )
    thread.join()
    assert code == 0
    assert results["mode"] == 0o600
    assert results["health"]["workspace_id"] == "inproc"
    assert not os.path.exists(uds)
    assert signal.getsignal(signal.SIGTERM) == previous


def test_serve_off_main_thread_installs_no_handlers(root: Path) -> None:
    """Called from a worker thread (as an embedding test harness might), serve still stops."""
    app = cli.build_app(str(root), TOKEN, "w", "auto")
    listener = cli.bind_tcp("127.0.0.1", 0)
    port = listener.sock.getsockname()[1]
    captured: dict[str, object] = {}
    original_server = cli.uvicorn.Server

    class Recording(original_server):  # type: ignore[misc, valid-type]
        def __init__(self, config) -> None:  # noqa: ANN001
            super().__init__(config)
            captured["server"] = self

    cli.uvicorn.Server = Recording
    try:
        thread = threading.Thread(target=cli.serve, args=(app, listener.sock))
        thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/v1/health", headers={"Authorization": f"Bearer {TOKEN}"}
                )
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert response.status_code == 200
        captured["server"].should_exit = True
        thread.join(timeout=20)
        assert not thread.is_alive()
    finally:
        cli.uvicorn.Server = original_server
        listener.close()


# --- exit with parent -----------------------------------------------------------------------


PR_GET_PDEATHSIG = 2


def _pdeathsig() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    value = ctypes.c_int(0)
    assert libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0) == 0
    return value.value


def _set_pdeathsig(sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(cli.PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0


def test_exit_with_parent_sets_pdeathsig(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _pdeathsig()
    try:
        cli.exit_with_parent()
        assert _pdeathsig() == signal.SIGTERM
    finally:
        _set_pdeathsig(before)


def test_exit_with_parent_when_parent_already_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _pdeathsig()
    ppids = iter([1234, 1])
    monkeypatch.setattr(cli.os, "getppid", lambda: next(ppids))
    try:
        with pytest.raises(cli.StartupError, match="parent process exited"):
            cli.exit_with_parent()
    finally:
        _set_pdeathsig(before)


def test_exit_with_parent_prctl_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeLibc:
        def prctl(self, *args: object) -> int:
            return -1

    monkeypatch.setattr(cli.ctypes, "CDLL", lambda *a, **k: FakeLibc())
    with pytest.raises(cli.StartupError, match="prctl"):
        cli.exit_with_parent()


# --- the real process -----------------------------------------------------------------------


@pytest.mark.integration
def test_process_sigterm_exits_cleanly_and_removes_socket(start_runner, root: Path) -> None:  # noqa: ANN001
    runner = start_runner(root)
    assert stat.S_IMODE(os.lstat(runner.uds).st_mode) == 0o600
    runner.proc.send_signal(signal.SIGTERM)
    assert runner.proc.wait(timeout=15) == 0
    assert not os.path.exists(runner.uds)
    assert runner.proc.stderr.read() == ""  # warning level: nothing to say on a clean run


@pytest.mark.integration
def test_process_refuses_to_start_without_token(root: Path, short_tmp: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != cli.TOKEN_ENV}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent_runner",
            "serve",
            "--workspace",
            str(root),
            "--workspace-id",
            "w",
            "--uds",
            str(short_tmp / "s"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 2
    assert "agent-runner: error: no token" in result.stderr
    assert not (short_tmp / "s").exists()


@pytest.mark.integration
def test_process_exits_when_parent_dies(root: Path, short_tmp: Path) -> None:
    uds = str(short_tmp / "child.sock")
    parent_code = f"""
import subprocess, sys, time
proc = subprocess.Popen([sys.executable, "-m", "agent_runner", "serve", "--workspace", {str(root)!r},
    "--workspace-id", "w", "--uds", {uds!r}, "--token-stdin", "--exit-with-parent"],
    stdin=subprocess.PIPE, text=True)
proc.stdin.write({TOKEN!r} + "\\n")
proc.stdin.close()
print(proc.pid, flush=True)
time.sleep(120)
"""
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    try:
        runner_pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 20
        while not os.path.exists(uds):
            assert time.monotonic() < deadline, "runner did not start"
            time.sleep(0.05)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 20
        while os.path.exists(uds) or _alive(runner_pid):
            assert time.monotonic() < deadline, "runner outlived its parent"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()
        if _alive(runner_pid):
            os.kill(runner_pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- event loop -----------------------------------------------------------------------------


def _loop_of(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as maps:
        return "uvloop" if "/uvloop/" in maps.read() else "asyncio"


@pytest.mark.integration
@pytest.mark.anyio
async def test_process_serves_files_and_sandboxed_commands_on_asyncio_s_loop(
    start_runner, root: Path  # noqa: ANN001
) -> None:
    """The runner runs on asyncio's loop, never uvloop, even where uvloop is installed (mcp-api's
    environment has it): uvloop's pipe transports close the command pipes' descriptors twice
    (MagicStack/uvloop#763), which under load closed other threads' files. File ops, a command with
    stdin and output pipes (connect_read_pipe / connect_write_pipe / add_reader), a background job,
    and a clean SIGTERM exit."""
    import anyio
    from agent_runner.client import RunnerClient
    from agent_runner.protocol import RunCommandResult, SandboxStatusResult

    runner = start_runner(root)
    assert _loop_of(runner.proc.pid) == "asyncio"
    async with RunnerClient(token=runner.token, uds=runner.uds) as client:
        await client.wait_ready(timeout=10)
        await client.call("files/write", {"path": "in.txt", "content": "hello\n"})
        assert (await client.call("files/read", {"path": "in.txt"})).content == "hello\n"
        status = await client.call("sandbox/status", {})
        assert isinstance(status, SandboxStatusResult)
        if not status.minimum_ok:
            pytest.skip(f"no sandbox on this machine: {status.controls}")
        command = {"shell": "cat; cat in.txt >&2; echo done", "stdin": "from stdin\n"}
        ran = await client.call("exec/run", command)
        assert isinstance(ran, RunCommandResult) and ran.result is not None
        outcome = (ran.result.exit_code, ran.result.stdout, ran.result.stderr)
        assert outcome == (0, "from stdin\ndone\n", "hello\n")
        job = await client.call("exec/run", {"argv": ["sh", "-c", "echo bg"], "background": True})
        assert job.status == "started" and job.job_id
        deadline = time.monotonic() + 20
        output = ""
        while "bg" not in output and time.monotonic() < deadline:
            await anyio.sleep(0.05)
            since = len(output.encode())
            output += (await client.call("exec/job_output", {"job_id": job.job_id, "since_offset": since})).output
        assert output == "bg\n"
    runner.proc.send_signal(signal.SIGTERM)
    assert runner.proc.wait(timeout=15) == 0
