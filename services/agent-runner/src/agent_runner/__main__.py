"""Command line: `agent-runner serve` (also `python -m agent_runner serve`).

    agent-runner serve --workspace DIR --workspace-id ID
                       (--uds PATH | --host HOST --port PORT)
                       [--token-stdin | --token-file FILE] [--exit-with-parent]

The token comes from the first line of stdin (`--token-stdin`, preferred: it never appears in
`ps` output, the environment or a file), from the first line of a file, or, as a last resort,
from the AGENT_RUNNER_TOKEN environment variable, which is removed from the environment at once
so nothing the runner starts later inherits it. Without a token the runner refuses to start.

The Unix socket is created with mode 0600 (under a 0177 umask, so it is never briefly wider) and
removed on exit. SIGTERM and SIGINT shut the server down gracefully and exit 0. With
`--exit-with-parent` the kernel sends SIGTERM when the process that started the runner dies.

The event loop is asyncio's, deliberately not uvloop: uvloop's connect_read_pipe/connect_write_pipe
close the command pipes' descriptor numbers twice (MagicStack/uvloop#763), and under load the second
close hit descriptors other threads had just opened (write_file failed with EBADF in the client-mix
load test); a stray close in the process that owns the workspace and the sandbox is not a price
worth ~5 % of its CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette

from agent_runner import __version__
from agent_runner.api import create_app
from agent_runner.observability import LOG_FORMAT_ENV, LOG_LEVEL_ENV, register_secret, setup_runner
from agent_runner.sandbox.policy import SandboxPolicy
from agent_runner.workspace.paths import RESOLVERS
from agent_runner.write_coalescing import CoalescingHttpToolsProtocol

TOKEN_ENV = "AGENT_RUNNER_TOKEN"  # noqa: S105 - a variable name, not a secret
MIN_TOKEN_LENGTH = 16
PR_SET_PDEATHSIG = 1
GRACEFUL_SHUTDOWN_SECONDS = 5


class StartupError(Exception):
    """A problem with how the runner was started; reported in one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent-runner", description="secure-agent workspace runner")
    parser.add_argument("--version", action="version", version=f"agent-runner {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the runner protocol for one workspace")
    serve.add_argument("--workspace", required=True, help="workspace directory (must exist)")
    serve.add_argument("--workspace-id", required=True, help="identifier reported by /v1/health")
    listen = serve.add_mutually_exclusive_group(required=True)
    listen.add_argument("--uds", help="listen on this Unix socket path (created with mode 0600)")
    listen.add_argument("--host", help="listen on this TCP address (needs --port)")
    serve.add_argument("--port", type=int, help="TCP port for --host")
    token = serve.add_mutually_exclusive_group()
    token.add_argument(
        "--token-stdin", action="store_true", help="read the token from the first line of stdin"
    )
    token.add_argument("--token-file", help="read the token from the first line of this file")
    serve.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="exit (SIGTERM) when the parent process dies (Linux PR_SET_PDEATHSIG)",
    )
    serve.add_argument(
        "--resolver",
        choices=("auto", *RESOLVERS),
        default="auto",
        help="path resolver; 'auto' uses openat2 when the kernel has it",
    )
    serve.add_argument(
        "--sandbox",
        default="{}",
        metavar="JSON",
        help="sandbox policy settings as a JSON object (fields of SandboxPolicy except workspace and tmp_dir)",
    )
    serve.add_argument(
        "--tmp-dir",
        help="commands' private temporary directory (default: a fresh one, removed at exit)",
    )
    serve.add_argument(
        "--log-level",
        default=os.environ.get(LOG_LEVEL_ENV, "warning").lower(),
        choices=("debug", "info", "warning", "error"),
        help=f"log level (default: ${LOG_LEVEL_ENV} or warning); lines are JSON unless {LOG_FORMAT_ENV}=text",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.host is not None and args.port is None:
        parser.error("--host needs --port")
    if args.port is not None and args.host is None:
        parser.error("--port needs --host (or use --uds)")
    setup_runner(args.log_level)
    try:
        if args.exit_with_parent:
            exit_with_parent()
        token = read_token(args.token_stdin, args.token_file)
        register_secret(token)
        tmp_dir, own_tmp = command_tmp_dir(args.tmp_dir)
        policy = build_policy(args.workspace, tmp_dir, args.sandbox)
        app = build_app(args.workspace, token, args.workspace_id, args.resolver, policy)
        listener = bind_unix(args.uds) if args.uds else bind_tcp(args.host, args.port)
    except StartupError as exc:
        print(f"agent-runner: error: {exc}", file=sys.stderr)
        return 2
    try:
        serve(app, listener.sock, log_level=args.log_level)
    finally:
        listener.close()
        if own_tmp:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return 0


def command_tmp_dir(given: str | None) -> tuple[str, bool]:
    """The commands' TMPDIR and whether this runner made it (and so removes it at exit)."""
    if given:
        try:
            os.makedirs(given, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create tmp dir {given!r}: {exc.strerror}") from None
        return os.path.abspath(given), False
    return tempfile.mkdtemp(prefix="agent-runner-tmp-"), True


def build_policy(workspace: str, tmp_dir: str, sandbox_json: str) -> SandboxPolicy:
    try:
        overrides = json.loads(sandbox_json)
    except ValueError as exc:
        raise StartupError(f"--sandbox is not valid JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise StartupError("--sandbox must be a JSON object of policy settings")
    for reserved in ("workspace", "tmp_dir"):
        if reserved in overrides:
            raise StartupError(f"--sandbox may not set {reserved}; it comes from --workspace / --tmp-dir")
    try:
        return SandboxPolicy(workspace=os.path.abspath(workspace), tmp_dir=tmp_dir, **overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}" for e in exc.errors())
        raise StartupError(f"invalid sandbox policy: {problems}") from None


def build_app(
    workspace: str, token: str, workspace_id: str, resolver: str, sandbox: SandboxPolicy | None = None
) -> Starlette:
    if not os.path.isdir(workspace):
        raise StartupError(f"workspace {workspace!r} is not an existing directory")
    try:
        return create_app(os.path.abspath(workspace), token, workspace_id, resolver=resolver, sandbox=sandbox)
    except (OSError, RuntimeError) as exc:
        raise StartupError(f"cannot open workspace {workspace!r}: {exc}") from None


@dataclass
class Listener:
    """A bound, listening socket; for a Unix socket also its path and inode, to remove it on exit."""

    sock: socket.socket
    uds_path: str | None = None
    uds_inode: int | None = None

    def close(self) -> None:
        if self.uds_path is not None:
            # Only our socket: a newer runner may already have bound the same path. Checked
            # while our socket is still open, so its inode number cannot have been reused.
            with contextlib.suppress(FileNotFoundError):
                if os.lstat(self.uds_path).st_ino == self.uds_inode:
                    os.unlink(self.uds_path)
        self.sock.close()


def read_token(from_stdin: bool, token_file: str | None) -> str:
    """The bearer token, from stdin, a file, or the environment (in that order of preference)."""
    from_env = os.environ.pop(TOKEN_ENV, None)
    if from_stdin:
        token, source = sys.stdin.readline(), "stdin"
    elif token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.readline()
        except OSError as exc:
            raise StartupError(f"cannot read --token-file {token_file!r}: {exc.strerror}") from None
        source = f"--token-file {token_file}"
    elif from_env is not None:
        token, source = from_env, TOKEN_ENV
    else:
        raise StartupError(f"no token: pass --token-stdin, --token-file FILE, or set {TOKEN_ENV}")
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise StartupError(
            f"the token from {source} has {len(token)} characters; use at least {MIN_TOKEN_LENGTH} "
            "random ones (e.g. secrets.token_urlsafe(32))"
        )
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise StartupError(f"the token from {source} must be printable ASCII without spaces")
    return token


def exit_with_parent() -> None:
    """Ask the kernel to send SIGTERM when our parent dies; exit now if it already has."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise StartupError(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}")
    # The parent may have died before prctl took effect; then we were already re-parented.
    if os.getppid() != parent:
        raise StartupError("the parent process exited before the runner started")


def bind_unix(path: str) -> Listener:
    """Listen on a Unix socket that only this user can connect to."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise StartupError(f"--uds {path!r} exists and is not a socket; refusing to replace it")
        if _socket_is_live(path):
            raise StartupError(f"--uds {path!r} is in use by a running server")
        os.unlink(path)  # left behind by a runner that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on --uds {path!r}: {exc.strerror or exc}") from None
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    sock.listen(128)
    return Listener(sock, path, os.lstat(path).st_ino)


def _socket_is_live(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def bind_tcp(host: str, port: int) -> Listener:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return Listener(socket.create_server((host, port), family=family, backlog=128))
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(app: Starlette, listener: socket.socket, *, log_level: str = "warning") -> None:
    """Run uvicorn on an already-bound socket until SIGTERM or SIGINT, on asyncio's loop (see above)."""
    config = uvicorn.Config(
        app,
        log_level=log_level,
        # Logging is set up by setup_runner (JSON, redacted); uvicorn must not install its own.
        log_config=None,
        access_log=False,
        lifespan="on",
        http=CoalescingHttpToolsProtocol,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = uvicorn.Server(config)

    # uvicorn installs its own handlers while serving, then restores these and re-raises the
    # signal it caught; with the default action that would kill us before the socket is
    # removed. These handlers instead ask the server to stop (which also covers a signal that
    # arrives before uvicorn has installed its own).
    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    handled = (signal.SIGTERM, signal.SIGINT)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, stop) for sig in handled} if in_main_thread else {}
    try:
        asyncio.run(server.serve(sockets=[listener]))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
