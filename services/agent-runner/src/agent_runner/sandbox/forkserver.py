"""The fork server: a small single-threaded process that starts every sandboxed command.

Why a separate process: confinement has to be applied between fork and exec, in the child. The
runner is multi-threaded (uvicorn, anyio worker threads), and forking a multi-threaded Python
process and running Python code in the child can deadlock on a lock some other thread held
(`preexec_fn` has that problem). Re-executing a Python helper per command is safe but costs
~10 ms of interpreter start-up each time. So the runner starts this server once; it imports
everything, builds Landlock rulesets and seccomp programs once per policy, and for each command
only forks (about a millisecond), with no other thread that could hold a lock.

Per command there are three processes (two without a PID namespace):

  fork server ── supervisor ─┬─ init     PID 1 of the command's PID namespace: reaps orphans
                 (root)      └─ command  PID 2: confined between fork and exec, then exec

The *supervisor* creates the command's cgroup, namespaces and mounts and forks init, forks the
command, reports "started" (with a pidfd of itself) to the runner, waits, kills what the
command left behind, reports the exit status with resource usage and cgroup counters, and
cleans up. Everything up to forking the command does not depend on the command, so the server
keeps one *warm* supervisor per recent policy that has done it already and only waits for its
command: a request then costs one fork (the command) instead of three, plus the namespaces.

The runner times the command and, on timeout or output flood, sends the supervisor SIGTERM,
which kills the whole tree (PID namespace / cgroup.kill / descendant scan) and still reports. If
the supervisor itself dies, init and the command get SIGKILL (parent-death signal); if the fork
server dies, supervisors get SIGTERM and do the same; if the runner dies, the fork server sees
EOF on its socket and stops everything. The fork server is also a child subreaper: a process
that escaped a supervisor that was killed ends up here and is killed.

Protocol (SOCK_SEQPACKET, one JSON object per message, fds by SCM_RIGHTS). The runner sends
{"op": "plan"|"spawn", ...} on the control socket with a fresh reply socket as the first fd
(for spawn followed by the command's stdin, stdout and stderr). Replies on the reply socket:
{"event": "plan", ...}, {"event": "started", "pid": supervisor, "child": command} + pidfd,
{"event": "exited", "status": wait status, ...}, or {"event": "error", "message": ...}.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import json
import os
import signal
import socket
import sys
import time
from collections import OrderedDict
from typing import Any

from . import _syscalls as sc
from . import cgroups, landlock, limits, namespaces, privileges, probe
from . import seccomp as seccomp_mod
from .plan import Facts, Plan, decide, owner

MAX_MESSAGE = 1 << 20
MAX_FDS = 8
CACHE_SIZE = 16
MAX_WARM = 2  # policies with a warm supervisor waiting (each holds a process, init and namespaces)
SETUP_FAILED = 125  # exit status of a command process whose confinement could not be applied
KILL_ROUNDS = 100
_INIT_NAME = ctypes.create_string_buffer(b"sandbox-init")
# Mounted over with the command's private tmp dir (POSIX shared memory and semaphores live here).
SHM = "/dev/shm"  # noqa: S108  # nosec B108 - a mount point covered by the private tmp dir, never written here


# ---------------------------------------------------------------------------------------------
# Messages


def send(sock: socket.socket, obj: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
    data = json.dumps(obj).encode()
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.send(data)


def parse(data: bytes, ancdata: list, flags: int) -> tuple[dict[str, Any] | None, list[int]]:
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
            fds.extend(arr)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise ValueError("message or its file descriptors were truncated")
    if not data:
        return None, fds
    return json.loads(data), fds


def recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    data, ancdata, flags, _ = sock.recvmsg(
        MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC
    )
    return parse(data, ancdata, flags)


# ---------------------------------------------------------------------------------------------
# Per-policy preparation (in the fork server)


class Prepared:
    """Everything a command of one policy needs, built before fork so the child only makes syscalls."""

    def __init__(self, policy: dict[str, Any], plan: Plan, server: Server) -> None:
        self.policy = policy
        self.plan = plan
        ws, tmp = policy["workspace"], policy["tmp_dir"]
        self.landlock: landlock.RulesetTemplate | None = None
        self.filter: seccomp_mod.PreparedFilter | None = None
        if plan.landlock_abi >= 1:
            spec = landlock.LandlockSpec(
                exec_paths=tuple(policy["exec_paths"]),
                read_only_paths=tuple(policy["read_only_paths"]),
                device_paths=tuple(policy["device_paths"]),
                writable_paths=(ws, tmp),
                denied_paths=tuple(policy["denied_paths"]),
                deny_tcp=not policy["allow_network"],
                scope=True,
            )
            self.landlock = landlock.RulesetTemplate(spec, plan.landlock_abi)
        if plan.seccomp:
            self.filter = server.seccomp_filter(bool(policy["allow_network"]), plan.allow_unix)
        self.dropper = (
            privileges.Dropper(plan.uid, plan.gid) if plan.drop_caps or plan.uid is not None else None
        )
        self.limits = limits.rlimits(policy)
        self.mounts = namespaces.MountPlan()
        if plan.namespaces:
            for source, target in ((ws, ws), (tmp, tmp), (tmp, SHM)):
                if target == SHM and not os.path.isdir(SHM):
                    continue
                fd = server.idmap_fd(source, plan) if plan.idmap else -1
                self.mounts.binds.append(namespaces.Bind(source, target, fd))
            self.mounts.masks = list(plan.masks)
        self.ns_flags = namespaces.flags(plan.netns) if plan.namespaces else 0

        self.key = ""
        # A supervisor forked ahead of the next command of this policy, its namespaces, mounts,
        # init and cgroup already made: the request only has to fork the command.
        self.warm: tuple[int, socket.socket] | None = None

    def drop_warm(self) -> None:
        if self.warm is not None:
            self.warm[1].close()  # EOF: the warm supervisor cleans up and exits
            self.warm = None

    def close(self) -> None:
        if self.landlock is not None:
            self.landlock.close()
        self.drop_warm()


class Server:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pid = os.getpid()
        self.supervisors: set[int] = set()
        self.prepared: OrderedDict[str, Prepared] = OrderedDict()
        self.filters: dict[tuple[bool, bool], seccomp_mod.PreparedFilter] = {}
        self.userns: dict[tuple[int, int, int, int], int] = {}
        self.idmap_ok: dict[int, tuple[bool, str]] = {}
        self.seq = 0
        self.warm_order: list[str] = []
        self._ns_probe: dict[bool, tuple[bool, str]] = {}
        self._cgroups: tuple[cgroups.CgroupSupport, str] | None = None

    # -- facts and caches ------------------------------------------------------------------

    def cgroup_support(self) -> tuple[cgroups.CgroupSupport, str]:
        if self._cgroups is None:
            if os.geteuid() != 0:
                self._cgroups = (cgroups.CgroupSupport(), "runner is not root")
            else:
                self._cgroups = cgroups.setup(f"secure-agent-{self.pid}")
        return self._cgroups

    def namespaces_probe(self, netns: bool) -> tuple[bool, str]:
        if netns not in self._ns_probe:
            with _sigchld_blocked():
                self._ns_probe[netns] = namespaces.probe_namespaces(netns)
        return self._ns_probe[netns]

    def seccomp_filter(self, allow_network: bool, allow_unix: bool) -> seccomp_mod.PreparedFilter:
        key = (allow_network, allow_unix)
        if key not in self.filters:
            self.filters[key] = seccomp_mod.prepare(allow_network, allow_unix)
        return self.filters[key]

    def userns_fd(self, inner: tuple[int, int], outer: tuple[int, int]) -> int:
        key = (*inner, *outer)
        if key not in self.userns:
            with _sigchld_blocked():
                self.userns[key] = namespaces.make_idmap_userns(inner[0], inner[1], outer[0], outer[1])
        return self.userns[key]

    def idmap_fd(self, path: str, plan: Plan) -> int:
        assert plan.uid is not None and plan.gid is not None
        return self.userns_fd(owner(path), (plan.uid, plan.gid))

    def idmap_probe(self, path: str, uid: int, gid: int) -> tuple[bool, str]:
        dev = os.stat(path).st_dev
        if dev not in self.idmap_ok:
            try:
                fd = self.userns_fd(owner(path), (uid, gid))
            except OSError as exc:
                self.idmap_ok[dev] = (False, f"cannot create a user namespace: {exc}")
            else:
                with _sigchld_blocked():
                    ok, why = namespaces.probe_idmap(path, fd)
                self.idmap_ok[dev] = (
                    ok,
                    f"idmapped mounts unsupported on {path}'s filesystem: {why}" if not ok else "",
                )
        return self.idmap_ok[dev]

    def facts(self, policy: dict[str, Any]) -> Facts:
        ws, tmp = policy["workspace"], policy["tmp_dir"]
        euid = os.geteuid()
        sys_admin = privileges.has_capability(privileges.CAP_SYS_ADMIN)
        abi, ll_reason = probe.landlock_abi()
        sec, sec_reason = probe.seccomp_status()
        if sec:
            try:
                seccomp_mod._pyseccomp()
            except seccomp_mod.SeccompUnavailable as exc:
                sec, sec_reason = False, str(exc)
        ns_ok, ns_reason = (False, "runner is not root")
        if euid == 0 and sys_admin and policy["use_namespaces"] is not False:
            ns_ok, ns_reason = self.namespaces_probe(not policy["allow_network"])
        idmap_ok, idmap_reason = False, "namespaces unavailable"
        uid, gid = policy["drop_to_uid"], policy["drop_to_gid"]
        if ns_ok and uid is not None:
            idmap_ok, idmap_reason = self.idmap_probe(ws, uid, gid)
            if idmap_ok:
                idmap_ok, idmap_reason = self.idmap_probe(tmp, uid, gid)
        support, cg_reason = (cgroups.CgroupSupport(), "disabled by policy")
        if policy["use_cgroups"] is not False:
            support, cg_reason = self.cgroup_support()
        return Facts(
            euid=euid,
            sys_admin=sys_admin,
            landlock_abi=abi,
            landlock_reason=ll_reason,
            seccomp=sec,
            seccomp_reason=sec_reason,
            namespaces=ns_ok,
            namespaces_reason=ns_reason,
            idmap=idmap_ok,
            idmap_reason=idmap_reason,
            cgroup=support.describe(),
            cgroup_usable=support.usable,
            cgroup_reason=cg_reason,
            workspace_owner=owner(ws),
            tmp_owner=owner(tmp),
        )

    def prepare(self, policy: dict[str, Any]) -> Prepared:
        ws, tmp = policy["workspace"], policy["tmp_dir"]
        # The directories' identities are part of the key: a ruleset holds the inodes it was
        # built for, and a workspace that was deleted and recreated is another inode.
        ws_st, tmp_st = os.stat(ws), os.stat(tmp)
        key = json.dumps([policy, ws_st.st_dev, ws_st.st_ino, tmp_st.st_dev, tmp_st.st_ino], sort_keys=True)
        prepared = self.prepared.get(key)
        if prepared is not None:
            self.prepared.move_to_end(key)
            return prepared
        plan = decide(policy, self.facts(policy))
        prepared = Prepared(policy, plan, self)
        prepared.key = key
        self.prepared[key] = prepared
        while len(self.prepared) > CACHE_SIZE:
            _, old = self.prepared.popitem(last=False)
            old.close()
        return prepared

    # -- requests ----------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            try:
                msg, fds = recv(self.sock)
            except (ValueError, json.JSONDecodeError) as exc:
                print(f"agent-runner fork server: bad request: {exc}", file=sys.stderr)
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:  # pragma: no cover - PEP 475 retries recvmsg
                    continue
                break
            if msg is None:
                for fd in fds:
                    os.close(fd)
                break
            self.handle(msg, fds)

    def handle(self, msg: dict[str, Any], fds: list[int]) -> None:
        if not fds:
            return
        reply = socket.socket(fileno=fds[0])
        stdio = fds[1:]
        try:
            if msg.get("op") == "plan":
                prepared = self.prepare(msg["policy"])
                send(reply, {"event": "plan", "plan": prepared.plan.as_dict()})
            elif msg.get("op") == "spawn" and len(stdio) == 3:
                self.spawn(msg, reply, stdio)
            else:
                send(reply, {"event": "error", "message": f"bad request {msg.get('op')!r}"})
        except Exception as exc:  # every failure goes back to the caller, who raises it
            with contextlib.suppress(OSError):
                send(reply, {"event": "error", "message": f"{type(exc).__name__}: {exc}"})
        finally:
            _close_request(reply, stdio)

    def spawn(self, msg: dict[str, Any], reply: socket.socket, stdio: list[int]) -> None:
        prepared = self.prepare(msg["policy"])
        plan = prepared.plan
        if plan.errors:
            send(reply, {"event": "error", "kind": "unavailable", "message": "; ".join(plan.errors)})
            return
        if not plan.minimum_ok and not plan.unconfined:
            send(reply, {"event": "error", "kind": "unavailable", "message": plan.controls["mode"]})
            return
        if not self._hand_to_warm(prepared, msg, reply, stdio):
            self._fork_supervisor(prepared, msg, reply, stdio, None)
        # The next supervisor must not inherit this command's pipes (their readers would
        # never see EOF): they are closed here, before it is forked.
        _close_request(reply, stdio)
        # Ready the next one while this command starts (on the other CPU, if there is one).
        pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        prepared.warm = self._fork_supervisor(prepared, None, None, [], pair)
        self.warm_order = [k for k in self.warm_order if k != prepared.key] + [prepared.key]
        while len(self.warm_order) > MAX_WARM:
            stale = self.prepared.get(self.warm_order.pop(0))
            if stale is not None:
                stale.drop_warm()

    def _hand_to_warm(
        self, prepared: Prepared, msg: dict[str, Any], reply: socket.socket, stdio: list[int]
    ) -> bool:
        warm, prepared.warm = prepared.warm, None
        if warm is None:
            return False
        pid, sock = warm
        try:
            send(sock, {"argv": msg["argv"], "env": msg["env"], "cwd": msg["cwd"]}, [reply.fileno(), *stdio])
            return True
        except OSError:  # it died (killed by someone): start a cold one instead
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            return False
        finally:
            sock.close()

    def _fork_supervisor(
        self,
        prepared: Prepared,
        msg: dict[str, Any] | None,
        reply: socket.socket | None,
        stdio: list[int],
        pair: tuple[socket.socket, socket.socket] | None,
    ) -> tuple[int, socket.socket] | None:
        """A supervisor for `msg`, or (with `pair` and no msg) a warm one that waits for its
        request on the pair; returns (pid, our end of the pair) for a warm one."""
        self.seq += 1
        name = f"c{self.seq}"
        with _sigchld_blocked():
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the supervisor; its coverage is not collected
                code = 0
                try:
                    if pair is not None:
                        pair[0].close()
                    Supervisor(self, prepared, name, msg, reply, stdio, pair[1] if pair else None).run()
                except BaseException:
                    code = 1
                os._exit(code)
            self.supervisors.add(pid)
        if pair is None:
            return None
        pair[1].close()
        return pid, pair[0]

    # -- children ----------------------------------------------------------------------------

    def on_sigchld(self, signum: int, frame: Any) -> None:
        stranger = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.supervisors:
                self.supervisors.discard(pid)
                stranger |= os.WIFSIGNALED(status)
            else:
                stranger = True
        if stranger:
            self.kill_strangers()

    def kill_strangers(self) -> None:
        """Kill children that are not supervisors: orphans of a supervisor that was killed,
        re-parented here because this process is their subreaper."""
        for pid in _children(self.pid):
            if pid not in self.supervisors:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def shutdown(self) -> None:
        for prepared in self.prepared.values():
            prepared.drop_warm()  # idle supervisors see EOF and leave
        for pid in list(self.supervisors):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while self.supervisors and time.monotonic() < deadline:
            time.sleep(0.01)
        for pid in list(self.supervisors):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.kill_strangers()
        for prepared in self.prepared.values():
            prepared.close()
        support = self._cgroups[0] if self._cgroups else None
        if support is not None:
            time.sleep(0.05)
            support.cleanup()


def _close_request(reply: socket.socket, stdio: list[int]) -> None:
    """Close a request's fds once (the list is emptied, so a second call does nothing)."""
    reply.close()
    while stdio:
        with contextlib.suppress(OSError):
            os.close(stdio.pop())


class _sigchld_blocked:
    """Keep the SIGCHLD handler from reaping (or taking for a stranger) a child we wait for or
    have not registered yet."""

    def __enter__(self) -> None:
        self._old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})

    def __exit__(self, *exc: object) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old)


# ---------------------------------------------------------------------------------------------
# Process tree helpers


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) of every process, from /proc/PID/stat."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        rest = raw[raw.rfind(b")") + 2 :].split()
        if len(rest) >= 2:
            table[int(name)] = (int(rest[1]), rest[0].decode())
    return table


def _children(pid: int) -> list[int]:
    return [p for p, (ppid, _) in _proc_table().items() if ppid == pid]


def descendants(root: int) -> list[int]:
    """Live (non-zombie) descendants of `root`."""
    table = _proc_table()
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, stack = [], [root]
    while stack:
        for child in kids.get(stack.pop(), []):
            stack.append(child)
            if table[child][1] != "Z":
                out.append(child)
    return out


# ---------------------------------------------------------------------------------------------
# The supervisor (a forked child of the server) and the command process


class _Stop(Exception):
    """SIGTERM reached a warm supervisor that had no command yet."""


class Supervisor:
    """One command's supervisor. A *warm* one (no `msg` yet) makes the cgroup, namespaces,
    mounts and init first, then waits on `requests` for the command; a cold one does the same
    work after it was given the command."""

    def __init__(
        self,
        server: Server,
        prepared: Prepared,
        name: str,
        msg: dict[str, Any] | None,
        reply: socket.socket | None,
        stdio: list[int],
        requests: socket.socket | None,
    ) -> None:
        self.server_pid = server.pid
        self.cg_support = server._cgroups[0] if server._cgroups else None
        self.prepared = prepared
        self.plan = prepared.plan
        self.name = name
        self.msg = msg
        self.reply = reply
        self.stdio = stdio
        self.requests = requests
        self.cgroup: cgroups.CommandCgroup | None = None
        self.child = 0
        self.init = 0
        self.kill_requested = False
        self.waiting = False
        # Not ours: the server's control socket must see EOF when the server dies; the warm
        # supervisors of other policies are theirs.
        server.sock.close()
        for other in server.prepared.values():
            if other.warm is not None:
                other.warm[1].close()

    def run(self) -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        # If the fork server dies, SIGTERM us (and we kill the tree); it may already have.
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != self.server_pid:
            return
        failure: Exception | None = None
        try:
            self._prepare()
        except Exception as exc:  # reported to whoever asks for a command
            failure = exc
        if self.msg is None and not self._receive():
            self._kill_tree()
            self._reap_all()
            self._cleanup()
            return
        try:
            if failure is not None:
                raise failure
            self._start()
        except Exception as exc:
            self._kill_tree()
            self._reap_all()
            with contextlib.suppress(OSError):
                send(self.reply, {"event": "error", "kind": "setup", "message": str(exc)})
            self._cleanup()
            return
        status, rusage = self._wait()
        # Whatever the command left running dies with it: daemons, setsid grandchildren.
        self._kill_tree()
        self._reap_all()
        stats = self.cgroup.stats() if self.cgroup else {}
        with contextlib.suppress(OSError):
            send(
                self.reply,
                {
                    "event": "exited",
                    "status": status,
                    "cpu_s": rusage.ru_utime + rusage.ru_stime,
                    "max_rss_kib": rusage.ru_maxrss,
                    "killed": self.kill_requested,
                    **stats,
                },
            )
        # The tree is gone already; removing its (empty) groups need not delay the answer.
        self._cleanup()

    def _receive(self) -> bool:
        """Wait for the command (warm supervisor); False when there will be none."""
        assert self.requests is not None
        self.waiting = True  # from here on SIGTERM interrupts the wait (see _on_term)
        try:
            if self.kill_requested:
                return False
            msg, fds = recv(self.requests)
        except (_Stop, OSError, ValueError):
            return False
        finally:
            self.waiting = False
            self.requests.close()
        if msg is None or len(fds) != 4:
            for fd in fds:
                os.close(fd)
            return False
        self.msg = msg
        self.reply = socket.socket(fileno=fds[0])
        self.stdio = fds[1:]
        return True

    def _on_term(self, signum: int, frame: Any) -> None:
        self.kill_requested = True
        self._kill_tree()
        if self.waiting:
            raise _Stop

    def _prepare(self) -> None:
        """Everything that does not depend on the command itself."""
        plan, prepared = self.plan, self.prepared
        if plan.cgroups and self.cg_support is not None:
            self.cgroup = cgroups.CommandCgroup(self.cg_support, self.name, prepared.policy)
        self._life_r, self._lifeline = os.pipe2(os.O_CLOEXEC)  # never written: its EOF means we died
        if plan.namespaces:
            sc.unshare(prepared.ns_flags)
            namespaces.setup_mounts(prepared.mounts)
            self._start_init(self._life_r)
        else:
            # Orphans of the command re-parent to us, not to init: the tree stays findable.
            sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        self.reset_signals = [signal.SIGTERM] + [
            sig
            for sig in signal.valid_signals()
            if sig not in (signal.SIGKILL, signal.SIGSTOP) and signal.getsignal(sig) == signal.SIG_IGN
        ]

    def _start(self) -> None:
        plan, prepared = self.plan, self.prepared
        life_r, life_w = self._life_r, self._lifeline
        rl = prepared.limits
        if plan.nproc_uid is not None:
            existing = limits.count_tasks(plan.nproc_uid)
            rl = limits.rlimits(prepared.policy, existing)
        rl = limits.clamp(rl)
        cg_fds = self.cgroup.open_procs() if self.cgroup else []
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the command process; it execs or exits
            _command_process(self, rl, cg_fds, err_r, err_w, life_r, life_w)
        self.child = pid
        os.close(life_r)
        os.close(err_w)
        for fd in cg_fds:
            os.close(fd)
        for fd in self.stdio:
            os.close(fd)
        self.stdio = []
        failure = _read_all(err_r)
        os.close(err_r)
        if failure:
            raise RuntimeError(failure.decode(errors="replace"))
        if self.kill_requested:
            self._kill_tree()
        pidfd = os.pidfd_open(os.getpid())
        try:
            assert self.reply is not None
            send(self.reply, {"event": "started", "pid": os.getpid(), "child": pid}, [pidfd])
        finally:
            os.close(pidfd)

    def _start_init(self, life_r: int) -> None:
        """Fork PID 1 of the new PID namespace: a reaper, so that the command (PID 2) keeps
        ordinary signal semantics (the kernel ignores SIGXCPU, SIGXFSZ, SIGPIPE, SIGTERM... sent
        to a PID 1 without handlers) and orphans do not pile up as zombies. Killing it kills
        everything in the namespace. Not waited for: the command, forked right after, is in
        the namespace whether or not init has run yet."""
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the namespace's init
            _namespace_init(life_r)
        self.init = pid

    def _wait(self) -> tuple[int, Any]:
        # Nothing else in this process reaps while the command runs, so this cannot miss it.
        _, status, rusage = os.wait4(self.child, 0)
        return status, rusage

    def _kill_tree(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill()
        if self.plan.namespaces:
            # PID 1 of the namespace: the kernel kills every other member when it dies.
            for pid in (self.init, self.child):
                if pid:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            return
        # Without a PID namespace: we are the subreaper, so every descendant, however it
        # detached, is below us. SIGKILLed processes cannot fork any more; whatever a fork in
        # flight produced shows up in the next round. Zombies are left for _reap_all (reaping
        # here could take the command's own status away from _wait).
        if not _has_children():
            return  # nothing is below us at all: no need to scan /proc
        for _ in range(KILL_ROUNDS):
            pids = descendants(os.getpid())
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.001)

    def _reap_all(self) -> None:
        if self.init:
            # Returns once init is dead, and init only dies after the kernel has killed and
            # released every other process of its namespace.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.init, 0)
        deadline = time.monotonic() + 5
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                continue
            if time.monotonic() > deadline:  # pragma: no cover - an unkillable (D state) task
                return
            if not self.plan.namespaces:
                self._kill_tree()
            time.sleep(0.001)

    def _cleanup(self) -> None:
        if self.cgroup is not None:
            self.cgroup.remove()


def _has_children() -> bool:
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _namespace_init(life_r: int) -> None:  # pragma: no cover - PID 1 of a namespace
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if _peer_gone(life_r):
            os._exit(1)
        sc.prctl(sc.PR_SET_NAME, ctypes.addressof(_INIT_NAME))  # what `ps` shows inside
        os.closerange(0, 1 << 20)
    except BaseException:
        os._exit(1)
    while True:
        signal.sigwait({signal.SIGCHLD})
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


def _peer_gone(fd: int) -> bool:  # pragma: no cover - runs in the command process
    """True when the write end of pipe `fd` is closed (nobody ever writes to it)."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1) == b""
    except BlockingIOError:
        return False


def _exec_error(file: str, err: int) -> None:  # pragma: no cover - runs in the command process
    reason = "command not found" if err == errno.ENOENT else os.strerror(err)
    os.write(2, f"sandbox: {file}: {reason}\n".encode(errors="replace"))
    os._exit(127 if err == errno.ENOENT else 126)


def _command_process(  # pragma: no cover - runs between fork and exec; coverage cannot follow it
    sup: Supervisor,
    rl: list[limits.Limit],
    cg_fds: list[int],
    err_r: int,
    err_w: int,
    life_r: int,
    life_w: int,
) -> None:
    prepared, plan, msg = sup.prepared, sup.plan, sup.msg
    try:
        os.close(err_r)
        os.close(life_w)
        cgroups.CommandCgroup.join(cg_fds)
        if plan.namespaces:
            namespaces.mount_proc()  # by a member of the new PID namespace, before dropping root
        os.setsid()
        # exec resets handled signals by itself; ignored ones would stay ignored (Python
        # ignores SIGPIPE and SIGXFSZ), and SIGTERM's handler must not run here.
        for sig in sup.reset_signals:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        stdin, stdout, stderr = sup.stdio
        os.dup2(stdin, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        _enter_cwd(prepared.policy["workspace"], msg["cwd"])
        if prepared.dropper is not None:
            prepared.dropper.drop()
        # After the uid change (which clears it): die with the supervisor.
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if _peer_gone(life_r):
            os._exit(SETUP_FAILED)  # the supervisor is already gone
        privileges.no_new_privs()
        if prepared.landlock is not None:
            # In a PID namespace /proc is the instance mounted above: it needs its own rule.
            extra = (("/proc", landlock.READ),) if plan.namespaces else ()
            landlock.restrict_self(prepared.landlock.build(extra))
        # Only stdio and the error pipe (close-on-exec) survive into the command.
        os.closerange(3, err_w)
        os.closerange(err_w + 1, 1 << 20)
        argv, env = msg["argv"], msg["env"]
        if "/" in argv[0]:
            candidates = [argv[0]]
        else:
            candidates = [os.path.join(d or ".", argv[0]) for d in env.get("PATH", "").split(":")]
        limits.apply(rl)
        if prepared.filter is not None:
            seccomp_mod.install(prepared.filter)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(err_w, f"applying the sandbox failed: {exc}".encode(errors="replace")[:8000])
        os._exit(SETUP_FAILED)
    # Confined from here on: what follows can only fail the way the command itself would.
    first_error = errno.ENOENT
    for path in candidates:
        try:
            os.execve(path, argv, env)  # noqa: S606 - argv as given, never through a shell
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR) and first_error == errno.ENOENT:
                first_error = exc.errno or errno.EACCES
    _exec_error(argv[0], first_error)


def _enter_cwd(workspace: str, cwd: str) -> None:  # pragma: no cover - runs in the command process
    # Opened by path *after* the mounts, so the descriptor is on the noexec bind, then resolved
    # beneath it without following any symlink: a directory swapped for a link since the runner
    # checked `cwd` cannot move the command elsewhere.
    ws_fd = os.open(workspace, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if cwd in ("", "."):
            os.fchdir(ws_fd)
            return
        resolve = sc.RESOLVE_BENEATH | sc.RESOLVE_NO_SYMLINKS | sc.RESOLVE_NO_MAGICLINKS
        try:
            fd = sc.openat2(ws_fd, cwd, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, resolve)
        except OSError as exc:
            if exc.errno != errno.ENOSYS:
                raise
            fd = _walk_nofollow(ws_fd, cwd)
        try:
            os.fchdir(fd)
        finally:
            os.close(fd)
    finally:
        os.close(ws_fd)


def _walk_nofollow(dir_fd: int, relpath: str) -> int:  # pragma: no cover - kernels before 5.6
    fd = os.dup(dir_fd)
    for part in relpath.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            os.close(fd)
            raise OSError(errno.EXDEV, "'..' is not allowed in cwd")
        nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        os.close(fd)
        fd = nxt
    return fd


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m agent_runner.sandbox.forkserver SOCKET_FD PARENT_PID", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(args[0]))
    # Everything started from here inherits no core dumps (a crashing supervisor or command
    # must not write memory images anywhere).
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    server = Server(sock)
    signal.signal(signal.SIGCHLD, server.on_sigchld)
    # SIGTERM (an operator, or the runner exiting) ends the server like EOF does.
    signal.signal(signal.SIGTERM, lambda *_: sock.shutdown(socket.SHUT_RDWR))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != int(args[1]):
        return 1
    try:
        server.serve()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
