"""Run one command in the sandbox: `run_command()`, its result, and the errors it raises.

The runner never forks: commands are started by the fork server (see forkserver.py), which this
module starts on first use and talks to over a Unix socket. Here live the parts that belong to
the runner: checking the caller's input, timing the command, capturing its output with caps,
and deciding what to report.

Output: stdout and stderr are read concurrently as they arrive. Each keeps its first 3/4 and
last 1/4 of `max_output_bytes` (the end of a build log is usually what matters), with a marker
saying how much was cut. Past that cap the runner keeps reading and discarding, so a command
that prints a lot still finishes and memory stays bounded, until a stream has produced
`output_kill_bytes`; then the command is killed and the result says "output".

Requires an asyncio event loop (directly or through anyio's asyncio backend).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .forkserver import MAX_MESSAGE, parse
from .policy import ENV_NAME, RESERVED_ENV, SandboxPolicy

# After SIGTERM the supervisor kills the tree and reports; if it has not within this time it is
# killed itself (the command then dies by its parent-death signal).
KILL_GRACE_S = 3.0
# Once the command tree is dead its pipes close; this only bounds a pathological wait.
DRAIN_S = 2.0
MAX_ARGV_ENTRIES = 16384


class SandboxError(RuntimeError):
    """The sandbox could not run a command for a reason that is not the caller's input."""


class SandboxUnavailable(SandboxError):
    """The minimum confinement (Landlock and seccomp, or namespaces) is missing, or the policy
    demands a control this machine cannot give, and no override was set."""


class CommandRejected(ValueError):
    """The request itself is invalid: nothing was started."""


@dataclass
class CommandResult:
    exit_code: int | None
    signal: str | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float
    limits_hit: list[str] = field(default_factory=list)
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    cpu_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Input


@dataclass(frozen=True)
class Request:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    stdin: bytes | None
    timeout_s: float


def _check_text(what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise CommandRejected(f"{what} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise CommandRejected(f"{what} contains a NUL byte")
    try:
        value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise CommandRejected(f"{what} is not encodable text") from None
    return value


def _check_cwd(policy: SandboxPolicy, cwd: Any) -> str:
    cwd = _check_text("cwd", cwd)
    if len(cwd) > 4096:
        raise CommandRejected("cwd is longer than 4096 characters")
    if cwd.startswith("/"):
        raise CommandRejected(f"cwd must be relative to the workspace, got the absolute path {cwd!r}")
    parts = [p for p in cwd.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CommandRejected(f"cwd {cwd!r} contains '..'; give a path inside the workspace")
    # Walk without following links, so the answer is about the directory the command will get
    # (the command process resolves it again, race-free, beneath the workspace).
    fd = os.open(policy.workspace, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            so_far = "/".join(parts[: i + 1])
            try:
                nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise CommandRejected(f"cwd {so_far!r} does not exist in the workspace") from None
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    if os.path.islink(os.path.join(policy.workspace, so_far)):
                        raise CommandRejected(
                            f"cwd {so_far!r} is a symbolic link; use the real path"
                        ) from None
                    raise CommandRejected(f"cwd {so_far!r} is not a directory") from None
                raise CommandRejected(f"cwd {so_far!r} cannot be opened: {exc.strerror}") from None
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    return "/".join(parts) or "."


def validate(
    policy: SandboxPolicy,
    argv: list[str] | None = None,
    shell: str | None = None,
    cwd: str = ".",
    stdin: bytes | str | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float | None = None,
) -> Request:
    """Check a request against the policy; raise CommandRejected with a clear reason."""
    if (argv is None) == (shell is None):
        raise CommandRejected("give exactly one of argv (a list of strings) or shell (a command line)")
    if shell is not None:
        shell = _check_text("shell", shell)
        if not shell.strip():
            raise CommandRejected("shell is empty")
        if len(shell.encode("utf-8", "surrogateescape")) > policy.max_argv_bytes:
            raise CommandRejected(f"the shell command is longer than {policy.max_argv_bytes} bytes")
        argv = ["/bin/sh", "-c", shell]
    else:
        if not isinstance(argv, list | tuple) or not argv:
            raise CommandRejected("argv must be a non-empty list of strings")
        if len(argv) > MAX_ARGV_ENTRIES:
            raise CommandRejected(f"argv has {len(argv)} entries; at most {MAX_ARGV_ENTRIES} are allowed")
        argv = [_check_text(f"argv[{i}]", a) for i, a in enumerate(argv)]
        if not argv[0]:
            raise CommandRejected("argv[0] (the program) is empty")
        size = sum(len(a.encode("utf-8", "surrogateescape")) + 1 for a in argv)
        if size > policy.max_argv_bytes:
            raise CommandRejected(f"argv is {size} bytes; at most {policy.max_argv_bytes} are allowed")

    if timeout_s is None:
        timeout_s = policy.timeout_s
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not math.isfinite(timeout_s):
        raise CommandRejected("timeout_s must be a number of seconds")
    if not 0 < timeout_s <= policy.max_timeout_s:
        raise CommandRejected(f"timeout_s must be > 0 and <= {policy.max_timeout_s:g}, got {timeout_s:g}")

    if isinstance(stdin, str):
        stdin = stdin.encode("utf-8", "surrogateescape")
    if stdin is not None:
        if not isinstance(stdin, bytes | bytearray | memoryview):
            raise CommandRejected("stdin must be bytes or text")
        stdin = bytes(stdin)
        if len(stdin) > policy.max_stdin_bytes:
            raise CommandRejected(
                f"stdin is {len(stdin)} bytes; at most {policy.max_stdin_bytes} are allowed"
            )

    extra: dict[str, str] = {}
    if env:
        if not isinstance(env, dict):
            raise CommandRejected("env must be a mapping of names to strings")
        size = 0
        for name, value in env.items():
            if not isinstance(name, str) or not ENV_NAME.match(name):
                raise CommandRejected(f"{name!r} is not a valid environment variable name")
            if name in RESERVED_ENV or name not in policy.env_allowlist:
                allowed = ", ".join(sorted(policy.env_allowlist - RESERVED_ENV))
                raise CommandRejected(f"environment variable {name} is not allowed; allowed names: {allowed}")
            extra[name] = _check_text(f"env[{name}]", value)
            size += len(name) + len(value.encode("utf-8", "surrogateescape")) + 2
        if size > policy.max_env_bytes:
            raise CommandRejected(f"env is {size} bytes; at most {policy.max_env_bytes} are allowed")

    return Request(list(argv), policy.environment(extra), _check_cwd(policy, cwd), stdin, float(timeout_s))


# ---------------------------------------------------------------------------------------------
# The fork server, from the runner's side


class ForkServer:
    """The runner's handle on its fork server: started on first use, restarted if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._plans: dict[str, dict[str, Any]] = {}

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Only what Python needs to start; coverage's variables let tests measure the server.
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL") or k.startswith("COV")}
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-m",
                    "agent_runner.sandbox.forkserver",
                    str(theirs.fileno()),
                    str(os.getpid()),
                ],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
                close_fds=True,
            )
        finally:
            theirs.close()
        self._sock = ours
        self._plans.clear()
        return ours

    def _ensure(self) -> socket.socket:
        if self._sock is None or self._proc is None or self._proc.poll() is not None:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            return self._start()
        return self._sock

    def request(self, msg: dict[str, Any], fds: list[int]) -> socket.socket:
        """Send a request; returns our end of its reply socket."""
        data = json.dumps(msg).encode()
        if len(data) > MAX_MESSAGE - 1024:
            raise CommandRejected("the command (argv, environment) is too large to send")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno(), *fds]))]
            with self._lock:
                for attempt in (1, 2):
                    sock = self._ensure()
                    try:
                        sock.sendmsg([data], ancillary)
                        break
                    except (BrokenPipeError, ConnectionResetError, ConnectionRefusedError):
                        # The server died (killed by an operator, OOM): start a new one, once.
                        sock.close()
                        self._sock = None
                        if attempt == 2:
                            raise SandboxError("the sandbox fork server is not running") from None
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return ours

    def plan(self, policy: SandboxPolicy) -> dict[str, Any]:
        """What applies to commands of this policy (blocking; cached)."""
        key = policy.cache_key()
        cached = self._plans.get(key)
        if cached is not None:
            return cached
        _ensure_tmp(policy)
        sock = self.request({"op": "plan", "policy": policy.to_wire()}, [])
        with sock:
            sock.settimeout(60)
            try:
                data, ancdata, flags, _ = sock.recvmsg(
                    MAX_MESSAGE, socket.CMSG_SPACE(16), socket.MSG_CMSG_CLOEXEC
                )
            except TimeoutError:
                raise SandboxError("the sandbox fork server did not answer") from None
            msg, fds = parse(data, ancdata, flags)
            for fd in fds:
                os.close(fd)
        if msg is None:
            raise SandboxError("the sandbox fork server exited while planning")
        if msg.get("event") != "plan":
            raise SandboxError(f"planning the sandbox failed: {msg.get('message')}")
        self._plans[key] = msg["plan"]
        return msg["plan"]

    async def plan_async(self, policy: SandboxPolicy) -> dict[str, Any]:
        cached = self._plans.get(policy.cache_key())
        if cached is not None:
            return cached
        return await asyncio.get_running_loop().run_in_executor(None, self.plan, policy)

    def close(self) -> None:
        """Stop the fork server (it stops every command it started)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
                self._proc = None
            self._plans.clear()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None


_default: ForkServer | None = None
_default_lock = threading.Lock()


def get_forkserver() -> ForkServer:
    global _default
    with _default_lock:
        if _default is None:
            _default = ForkServer()
        return _default


def shutdown_forkserver() -> None:
    """Stop the process-wide fork server and every command still running under it."""
    global _default
    with _default_lock:
        server, _default = _default, None
    if server is not None:
        server.close()


def _ensure_tmp(policy: SandboxPolicy) -> None:
    try:
        os.mkdir(policy.tmp_dir, 0o700)
    except FileExistsError:
        if not policy.tmp_dir.is_dir() or policy.tmp_dir.is_symlink():
            raise SandboxError(f"tmp_dir {policy.tmp_dir} exists and is not a directory") from None


def active_controls(policy: SandboxPolicy) -> dict[str, str]:
    """Which controls commands of this policy run under on this machine, as they are applied.

    Blocking: the first call for a policy asks the fork server (and may take tens of ms while it
    probes); later calls are answered from a cache.
    """
    return dict(get_forkserver().plan(policy)["controls"])


def sandbox_status(policy: SandboxPolicy) -> dict[str, Any]:
    """active_controls() plus the verdict: whether the minimum is in force, whether the
    operator's override is what lets commands run, and any control the policy demands that
    this machine lacks (blocking and cached, like active_controls)."""
    plan = get_forkserver().plan(policy)
    return {
        "controls": dict(plan["controls"]),
        "minimum_ok": bool(plan["minimum_ok"]),
        "unconfined": bool(plan["unconfined"]),
        "errors": list(plan["errors"]),
    }


def check_plan(policy: SandboxPolicy, plan: dict[str, Any]) -> None:
    if plan["errors"]:
        raise SandboxUnavailable("; ".join(plan["errors"]))
    if not plan["minimum_ok"] and not plan["unconfined"]:
        controls = plan["controls"]
        raise SandboxUnavailable(
            "refusing to run commands: this machine offers neither Landlock and seccomp nor namespaces "
            f"(landlock: {controls['landlock']}; seccomp: {controls['seccomp']}; namespaces: {controls['pidns']}). "
            "Use a kernel with Landlock (5.13+) and libseccomp2 installed, or run the runner as root; "
            "an operator who accepts running commands unconfined can set allow_unconfined "
            "(SECURE_AGENT_SANDBOX__ALLOW_UNCONFINED=true in mcp-api)."
        )


# ---------------------------------------------------------------------------------------------
# One running command


class OutputCapture:
    """One stream: keeps a bounded head and tail, counts everything."""

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.cap = cap
        self.tail_cap = cap // 4
        self.head_cap = cap - self.tail_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_cap:
            self.tail += data
            if len(self.tail) > 2 * self.tail_cap:
                del self.tail[: len(self.tail) - self.tail_cap]

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def text(self) -> str:
        if not self.truncated:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace")
        tail = bytes(self.tail[-self.tail_cap :]) if self.tail_cap else b""
        # Do not start the tail in the middle of a UTF-8 sequence.
        skip = 0
        while skip < min(3, len(tail)) and 0x80 <= tail[skip] <= 0xBF:
            skip += 1
        omitted = self.total - len(self.head) - len(tail)
        marker = (
            f"\n[... {omitted} bytes of {self.name} omitted: output limit is {self.cap} bytes per stream; "
            f"showing the first {len(self.head)} and the last {len(tail)} ...]\n"
        )
        return self.head.decode("utf-8", "replace") + marker + tail[skip:].decode("utf-8", "replace")


class _Reader(asyncio.Protocol):
    def __init__(
        self, capture: OutputCapture, on_data: Callable[[str, bytes], None] | None, done: asyncio.Future
    ) -> None:
        self.capture = capture
        self.on_data = on_data
        self.done = done

    def data_received(self, data: bytes) -> None:
        self.capture.feed(data)
        if self.on_data is not None:
            self.on_data(self.capture.name, data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class _Writer(asyncio.Protocol):
    def connection_lost(self, exc: Exception | None) -> None:
        pass


class _Reply:
    """Messages from the supervisor on the command's reply socket."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.queue: asyncio.Queue[tuple[dict[str, Any], list[int]] | None] = asyncio.Queue()
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._readable)
        self._open = True

    def _readable(self) -> None:
        try:
            data, ancdata, flags, _ = self.sock.recvmsg(
                MAX_MESSAGE, socket.CMSG_SPACE(16), socket.MSG_CMSG_CLOEXEC
            )
            msg, fds = parse(data, ancdata, flags)
        except (BlockingIOError, InterruptedError):
            return
        except (OSError, ValueError):
            msg, fds = None, []
        if msg is None:
            for fd in fds:
                os.close(fd)
            self._stop()
            self.queue.put_nowait(None)
        else:
            self.queue.put_nowait((msg, fds))

    def _stop(self) -> None:
        if self._open:
            self._open = False
            self.loop.remove_reader(self.sock.fileno())

    def close(self) -> None:
        self._stop()
        self.sock.close()
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item is not None:
                for fd in item[1]:
                    os.close(fd)


class _Process:
    def __init__(self, reply: _Reply) -> None:
        self.reply = reply
        self.pidfd = -1
        self.pid = 0
        self.child = 0
        self.exit_msg: dict[str, Any] | None = None
        self.finished = False

    async def started(self) -> None:
        item = await self.reply.queue.get()
        if item is None:
            raise SandboxError("the sandbox fork server closed the connection before the command started")
        msg, fds = item
        if msg.get("event") == "started" and fds:
            self.pidfd = fds[0]
            for fd in fds[1:]:
                os.close(fd)
            self.pid, self.child = msg["pid"], msg["child"]
            return
        for fd in fds:
            os.close(fd)
        message = msg.get("message", "unknown error")
        if msg.get("kind") == "unavailable":
            raise SandboxUnavailable(message)
        raise SandboxError(f"the sandbox could not start the command: {message}")

    async def exited(self) -> dict[str, Any] | None:
        item = await self.reply.queue.get()
        self.finished = True
        if item is None:
            return None
        msg, fds = item
        for fd in fds:
            os.close(fd)
        self.exit_msg = msg
        return msg

    def send_signal(self, sig: int) -> None:
        if self.pidfd >= 0:
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self.pidfd, sig)

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        self.reply.close()


def _kill_later(loop: asyncio.AbstractEventLoop, pidfd: int) -> None:
    """SIGTERM now, SIGKILL after the grace period: used when the caller gave up waiting."""
    try:
        fd = os.dup(pidfd)
    except OSError:
        return
    with contextlib.suppress(OSError):
        signal.pidfd_send_signal(fd, signal.SIGTERM)

    def finish() -> None:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        os.close(fd)

    loop.call_later(KILL_GRACE_S, finish)


_MEMORY_HINTS = re.compile(
    rb"MemoryError|Cannot allocate memory|[Oo]ut of memory|std::bad_alloc|heap out of memory|"
    rb"failed to allocate|memory allocation of \d+ bytes failed"
)
_PROCESS_HINTS = re.compile(
    rb"Cannot fork|fork: retry|can't fork|BlockingIOError: \[Errno 11\]|"
    rb"(fork|clone|thread|spawn)[^\n]{0,80}Resource temporarily unavailable"
)


def limits_hit(
    policy: SandboxPolicy,
    stopped_by: list[str],
    sig: str | None,
    exit_code: int | None,
    exit_msg: dict[str, Any] | None,
    stdout: OutputCapture,
    stderr: OutputCapture,
) -> list[str]:
    """Which limits stopped (or cut) the command. cgroup counters and signals are facts; the
    memory/process hints read from stderr are inferences for the rlimit-only case, where the
    kernel reports an allocation or fork failure to the process and to no one else."""
    hits = list(stopped_by)
    msg = exit_msg or {}
    cpu_s = float(msg.get("cpu_s", 0.0))
    if sig == "SIGXCPU" or (sig == "SIGKILL" and "timeout" not in hits and cpu_s >= policy.cpu_seconds):
        hits.append("cpu")
    failed = exit_code != 0
    err_text = bytes(stderr.head) + bytes(stderr.tail)
    if sig == "SIGXFSZ" or (failed and b"File too large" in err_text):
        hits.append("file_size")
    if msg.get("oom_kills", 0) > 0 or (failed and _MEMORY_HINTS.search(err_text)):
        hits.append("memory")
    if msg.get("pids_limit_hits", 0) > 0 or (failed and _PROCESS_HINTS.search(err_text)):
        hits.append("processes")
    if (stdout.truncated or stderr.truncated) and "output" not in hits:
        hits.append("output")
    return hits


async def execute(
    policy: SandboxPolicy,
    request: Request,
    *,
    server: ForkServer | None = None,
    on_output: Callable[[str, bytes], None] | None = None,
    on_started: Callable[[_Process], None] | None = None,
) -> CommandResult:
    """Run a validated request to completion (the engine under run_command and background jobs)."""
    server = server or get_forkserver()
    _ensure_tmp(policy)
    check_plan(policy, await server.plan_async(policy))
    loop = asyncio.get_running_loop()
    started_at = time.monotonic()

    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    if request.stdin is not None:
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
    else:
        in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
    ours = [out_r, err_r, in_w]
    try:
        sock = server.request(
            {
                "op": "spawn",
                "policy": policy.to_wire(),
                "argv": request.argv,
                "env": request.env,
                "cwd": request.cwd,
            },
            [in_r, out_w, err_w],
        )
    except BaseException:
        for fd in ours:
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)

    proc = _Process(_Reply(sock, loop))
    stdout, stderr = (
        OutputCapture("stdout", policy.max_output_bytes),
        OutputCapture("stderr", policy.max_output_bytes),
    )
    stop = asyncio.Event()
    stopped_by: list[str] = []

    def watch(name: str, data: bytes) -> None:
        capture = stdout if name == "stdout" else stderr
        if capture.total > policy.output_kill_bytes and "output" not in stopped_by:
            stopped_by.append("output")
            stop.set()
        if on_output is not None:
            on_output(name, data)

    done_out, done_err = loop.create_future(), loop.create_future()
    transports: list[asyncio.BaseTransport] = []
    exit_task: asyncio.Task | None = None
    stop_task: asyncio.Task | None = None
    try:
        for fd, capture, done in ((out_r, stdout, done_out), (err_r, stderr, done_err)):
            pipe = os.fdopen(fd, "rb", buffering=0)
            ours.remove(fd)
            transport, _ = await loop.connect_read_pipe(lambda c=capture, d=done: _Reader(c, watch, d), pipe)
            transports.append(transport)
        if in_w >= 0:
            pipe = os.fdopen(in_w, "wb", buffering=0)
            ours.remove(in_w)
            writer, _ = await loop.connect_write_pipe(_Writer, pipe)
            transports.append(writer)
            assert request.stdin is not None
            writer.write(request.stdin)
            writer.close()  # EOF after the data; the transport flushes first

        await proc.started()
        if on_started is not None:
            on_started(proc)
        exit_task = asyncio.ensure_future(proc.exited())
        stop_task = asyncio.ensure_future(stop.wait())
        remaining = request.timeout_s - (time.monotonic() - started_at)
        done, _ = await asyncio.wait(
            {exit_task, stop_task}, timeout=max(remaining, 0), return_when=asyncio.FIRST_COMPLETED
        )
        if exit_task not in done:
            if not stop.is_set():
                stopped_by.append("timeout")
            proc.send_signal(signal.SIGTERM)  # the supervisor kills the whole tree, then reports
            done, _ = await asyncio.wait({exit_task}, timeout=KILL_GRACE_S)
            if exit_task not in done:
                proc.send_signal(signal.SIGKILL)
                await asyncio.wait({exit_task}, timeout=KILL_GRACE_S)
        exit_msg = exit_task.result() if exit_task.done() else None
        await asyncio.wait({done_out, done_err}, timeout=DRAIN_S)
    except BaseException:
        # Cancelled (the caller went away) or failed: nothing may outlive the request.
        if proc.pidfd >= 0 and not proc.finished:
            _kill_later(loop, proc.pidfd)
        raise
    finally:
        for task in (exit_task, stop_task):
            if task is not None and not task.done():
                task.cancel()
        for transport in transports:
            transport.close()
        for fd in ours:
            if fd >= 0:
                os.close(fd)
        proc.close()

    duration = time.monotonic() - started_at
    exit_code: int | None
    sig: str | None
    if exit_msg is not None:
        status = int(exit_msg["status"])
        if os.WIFSIGNALED(status):
            exit_code, sig = None, _signal_name(os.WTERMSIG(status))
        else:
            exit_code, sig = os.waitstatus_to_exitcode(status), None
    else:
        exit_code, sig = None, "SIGKILL"
    return CommandResult(
        exit_code=exit_code,
        signal=sig,
        stdout=stdout.text(),
        stderr=stderr.text(),
        stdout_truncated=stdout.truncated,
        stderr_truncated=stderr.truncated,
        duration_s=round(duration, 6),
        limits_hit=limits_hit(policy, stopped_by, sig, exit_code, exit_msg, stdout, stderr),
        stdout_bytes=stdout.total,
        stderr_bytes=stderr.total,
        cpu_s=round(float((exit_msg or {}).get("cpu_s", 0.0)), 6),
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


async def run_command(
    policy: SandboxPolicy,
    argv: list[str] | None = None,
    shell: str | None = None,
    cwd: str = ".",
    stdin: bytes | str | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float | None = None,
) -> CommandResult:
    """Run one command confined by `policy` and wait for it (at most `timeout_s`).

    Raises CommandRejected for invalid input, SandboxUnavailable when the machine cannot confine
    the command as required, SandboxError when starting it failed otherwise. A command that
    fails, is killed or floods its output is a normal result: see `exit_code`, `signal` and
    `limits_hit`.
    """
    request = validate(policy, argv, shell, cwd, stdin, env, timeout_s)
    return await execute(policy, request)
