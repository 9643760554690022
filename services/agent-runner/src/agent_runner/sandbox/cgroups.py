"""Per-command cgroups: memory/pids/cpu limits for the whole command tree, and a reliable kill.

rlimits are per process; a cgroup bounds the tree: total memory (page cache included, OOM kill
inside the group only), total number of tasks (a fork bomb stops at `max_processes`), CPU share.
And it answers "which processes belong to this command?" exactly, so a timeout kills everything,
including children that called setsid or double-forked away.

Both hierarchies are used for what each can do here: controllers from cgroup v2 where they are
delegated to us, else from v1; the kill from v2's `cgroup.kill` (atomic, also catches tasks being
forked), else from the v1 freezer (freeze, SIGKILL every member, thaw).

Groups are created below the runner's own cgroup in each hierarchy, so every limit the host puts
on the runner still applies on top: `<runner's cgroup>/secure-agent-<fork server pid>/c<N>`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

V1_CONTROLLERS = ("memory", "pids", "cpu", "freezer")
CPU_PERIOD_US = 100_000


@dataclass
class Hierarchy:
    version: int
    mountpoint: str
    own_path: str  # the runner's cgroup, relative to the mountpoint
    controllers: frozenset[str]

    @property
    def own_dir(self) -> str:
        return os.path.normpath(self.mountpoint + "/" + self.own_path)


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(fstype, mountpoint, super options) of every cgroup mount of this process."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
                continue
            mountpoint = fields[4].replace("\\040", " ")
            out.append((rfields[0], mountpoint, set(rfields[2].split(","))))
    return out


def _own_paths() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if not ctrls:
                out[""] = path
            for ctrl in ctrls.split(","):
                out[ctrl] = path
    return out


def discover() -> list[Hierarchy]:
    try:
        mounts, own = _mounts(), _own_paths()
    except OSError:
        return []
    found: list[Hierarchy] = []
    for fstype, mountpoint, opts in mounts:
        if fstype == "cgroup2":
            if "" not in own:
                continue
            ctrl_file = os.path.join(mountpoint, own[""].lstrip("/"), "cgroup.controllers")
            try:
                with open(ctrl_file) as f:
                    ctrls = frozenset(f.read().split())
            except OSError:
                ctrls = frozenset()
            found.append(Hierarchy(2, mountpoint, own[""], ctrls))
        else:
            ctrls = frozenset(c for c in opts if c in V1_CONTROLLERS)
            path = next((own[c] for c in ctrls if c in own), None)
            if ctrls and path is not None:
                found.append(Hierarchy(1, mountpoint, path, ctrls))
    return found


@dataclass
class CgroupSupport:
    """The base directories this fork server created and what each is used for."""

    controllers: dict[str, str] = field(default_factory=dict)  # "memory"/"pids"/"cpu" -> base dir
    versions: dict[str, int] = field(default_factory=dict)
    kill_dir: str | None = None  # v2 base dir with cgroup.kill
    freezer_dir: str | None = None  # v1 freezer base dir
    created: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, str]:
        if not self.controllers and not self.kill_dir and not self.freezer_dir:
            return {"cgroup": "off", "cgroup_kill": "off"}
        by_version: dict[int, list[str]] = {}
        for ctrl in ("memory", "pids", "cpu"):
            if ctrl in self.controllers:
                by_version.setdefault(self.versions[ctrl], []).append(ctrl)
        limits = " ".join(f"v{v} ({','.join(c)})" for v, c in sorted(by_version.items())) or "no controllers"
        kill = "v2 cgroup.kill" if self.kill_dir else "v1 freezer" if self.freezer_dir else "off"
        return {"cgroup": limits, "cgroup_kill": kill}

    @property
    def usable(self) -> bool:
        return bool(self.controllers or self.kill_dir or self.freezer_dir)

    def cleanup(self) -> None:
        for base in reversed(self.created):
            with contextlib.suppress(OSError):
                for name in os.listdir(base):
                    child = os.path.join(base, name)
                    if os.path.isdir(child):
                        _rmdir(child)
                _rmdir(base)


def _rmdir(path: str, attempts: int = 20) -> bool:
    # A group stays busy for a moment after its last task has been reaped.
    for _ in range(attempts):
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.005)
    return False


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _sweep(parent: str, prefix: str) -> None:
    """Remove the groups of fork servers that died without cleaning up (SIGKILL, OOM): named
    `<prefix><pid>`, their pid is gone, and groups without tasks can be removed."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for entry in names:
        tail = entry[len(prefix) :]
        if not entry.startswith(prefix) or not tail.isdigit() or os.path.exists(f"/proc/{tail}"):
            continue
        base = os.path.join(parent, entry)
        with contextlib.suppress(OSError):
            for child in os.listdir(base):
                if os.path.isdir(os.path.join(base, child)):
                    _rmdir(os.path.join(base, child), attempts=1)
        _rmdir(base, attempts=1)


def setup(name: str, prefix: str = "secure-agent-") -> tuple[CgroupSupport, str]:
    """Create this fork server's base groups (`name` should be `prefix` + its pid). Returns
    what works and, if nothing does, why."""
    support = CgroupSupport()
    reasons = []
    hierarchies = discover()
    if not hierarchies:
        return support, "no cgroup hierarchy is mounted"

    def make_base(h: Hierarchy) -> str | None:
        _sweep(h.own_dir, prefix)
        base = os.path.join(h.own_dir, name)
        try:
            os.makedirs(base, exist_ok=True)
        except OSError as exc:
            reasons.append(f"cannot create {base}: {exc.strerror}")
            return None
        support.created.append(base)
        return base

    for h in (h for h in hierarchies if h.version == 2):
        base = make_base(h)
        if base is None:
            continue
        if os.path.exists(os.path.join(base, "cgroup.kill")):
            support.kill_dir = base
        delegated = h.controllers & {"memory", "pids", "cpu"}
        if delegated:
            try:
                _write(
                    os.path.join(base, "cgroup.subtree_control"), " ".join(f"+{c}" for c in sorted(delegated))
                )
                for ctrl in delegated:
                    support.controllers[ctrl] = base
                    support.versions[ctrl] = 2
            except OSError as exc:
                reasons.append(f"cannot enable v2 controllers in {base}: {exc.strerror}")
    for h in (h for h in hierarchies if h.version == 1):
        wanted = [c for c in h.controllers if c not in support.controllers and c in V1_CONTROLLERS]
        if not wanted:
            continue
        base = make_base(h)
        if base is None:
            continue
        for ctrl in wanted:
            if ctrl == "freezer":
                support.freezer_dir = base
            else:
                support.controllers[ctrl] = base
                support.versions[ctrl] = 1
    return support, "; ".join(reasons)


class CommandCgroup:
    """The groups of one command (one per hierarchy in use)."""

    def __init__(self, support: CgroupSupport, name: str, policy: dict[str, Any]) -> None:
        self.support = support
        self.dirs: list[str] = []
        self.by_ctrl: dict[str, str] = {}
        self.kill_dir: str | None = None
        self.freezer_dir: str | None = None
        extra = [support.kill_dir, support.freezer_dir]
        try:
            # One group per base directory: several controllers may share a hierarchy.
            for base in dict.fromkeys([*support.controllers.values(), *filter(None, extra)]):
                path = os.path.join(base, name)
                os.mkdir(path)
                self.dirs.append(path)
                for ctrl, cbase in support.controllers.items():
                    if cbase == base:
                        self.by_ctrl[ctrl] = path
                if base == support.kill_dir:
                    self.kill_dir = path
                if base == support.freezer_dir:
                    self.freezer_dir = path
            self._limit(policy)
        except BaseException:
            self.remove()
            raise

    def _limit(self, policy: dict[str, Any]) -> None:
        mem = int(policy["memory_bytes"])
        if path := self.by_ctrl.get("memory"):
            if self.support.versions["memory"] == 2:
                _write(f"{path}/memory.max", str(mem))
                with contextlib.suppress(OSError):
                    _write(f"{path}/memory.swap.max", "0")
            else:
                _write(f"{path}/memory.limit_in_bytes", str(mem))
                with contextlib.suppress(OSError):  # only with swap accounting
                    _write(f"{path}/memory.memsw.limit_in_bytes", str(mem))
        if path := self.by_ctrl.get("pids"):
            _write(f"{path}/pids.max", str(int(policy["max_processes"])))
        if path := self.by_ctrl.get("cpu"):
            quota = max(1000, int(float(policy["cpu_quota"]) * CPU_PERIOD_US))
            if self.support.versions["cpu"] == 2:
                _write(f"{path}/cpu.max", f"{quota} {CPU_PERIOD_US}")
            else:
                _write(f"{path}/cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(f"{path}/cpu.cfs_quota_us", str(quota))

    def open_procs(self) -> list[int]:
        """fds of every group's cgroup.procs, opened now (as root) for the child to join with."""
        return [os.open(f"{path}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) for path in self.dirs]

    @staticmethod
    def join(fds: list[int]) -> None:
        # "0" means the writing process itself, whatever PID namespace it is in.
        for fd in fds:
            os.write(fd, b"0")

    def members(self) -> list[int]:
        pids: set[int] = set()
        for path in self.dirs:
            with contextlib.suppress(OSError), open(f"{path}/cgroup.procs") as f:
                pids.update(int(p) for p in f.read().split())
        return sorted(pids)

    def kill(self) -> bool:
        """SIGKILL every task in the groups. True when a race-free method was available."""
        if self.kill_dir:
            try:
                _write(f"{self.kill_dir}/cgroup.kill", "1")
                return True
            except OSError:
                pass
        if self.freezer_dir:
            try:
                self._freeze_and_kill(self.freezer_dir)
                return True
            except OSError:
                pass
        for pid in self.members():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return False

    def _freeze_and_kill(self, path: str) -> None:
        # Frozen tasks cannot fork, so the member list is final while we kill it.
        _write(f"{path}/freezer.state", "FROZEN")
        try:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                with open(f"{path}/freezer.state") as f:
                    if f.read().strip() == "FROZEN":
                        break
                time.sleep(0.002)
            with open(f"{path}/cgroup.procs") as f:
                for pid in f.read().split():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)
        finally:
            _write(f"{path}/freezer.state", "THAWED")

    def stats(self) -> dict[str, int]:
        """Counters that say which cgroup limit stopped the command."""
        out = {"oom_kills": 0, "pids_limit_hits": 0}
        if path := self.by_ctrl.get("memory"):
            name = "memory.events" if self.support.versions["memory"] == 2 else "memory.oom_control"
            out["oom_kills"] = _read_key(f"{path}/{name}", "oom_kill")
        if path := self.by_ctrl.get("pids"):
            out["pids_limit_hits"] = _read_key(f"{path}/pids.events", "max")
        return out

    def remove(self) -> None:
        for path in reversed(self.dirs):
            _rmdir(path)
        self.dirs = []


def _read_key(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[0] == key:
                    return int(parts[1])
    except (OSError, ValueError):
        pass
    return 0
