"""Landlock: the filesystem, TCP and scope rules every command runs under.

The rules are resolved once per policy (in the fork server, which keeps every rule's path open);
each command process then builds its ruleset from those descriptors (one add_rule per rule)
and enters it with `restrict_self` just before exec.

What the ruleset grants (everything else that Landlock handles is denied):
- system trees (`exec_paths`): read and execute;
- `read_only_paths` (/etc, /proc, ...): read, never execute; `denied_paths` carved out of them;
- a few device files: read and write;
- the workspace and the private tmp dir: read, write, create, remove — but NOT execute, which is
  noexec semantics without any mount option (binaries copied into the workspace cannot be run);
- TCP bind/connect: nothing (ABI >= 4) unless the policy allows the network;
- scopes (ABI >= 6): no signals to, and no abstract-Unix-socket connections with, any process
  outside the command's own Landlock domain (the runner included).

Landlock cannot see mmap(PROT_EXEC), so `ld.so ./binary` still runs a workspace binary; only a
noexec mount (where a mount namespace is available) closes that.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from dataclasses import dataclass, field

from . import _syscalls as sc
from .probe import landlock_abi

ACCESS_FS_EXECUTE = 1 << 0
ACCESS_FS_WRITE_FILE = 1 << 1
ACCESS_FS_READ_FILE = 1 << 2
ACCESS_FS_READ_DIR = 1 << 3
ACCESS_FS_REMOVE_DIR = 1 << 4
ACCESS_FS_REMOVE_FILE = 1 << 5
ACCESS_FS_MAKE_CHAR = 1 << 6
ACCESS_FS_MAKE_DIR = 1 << 7
ACCESS_FS_MAKE_REG = 1 << 8
ACCESS_FS_MAKE_SOCK = 1 << 9
ACCESS_FS_MAKE_FIFO = 1 << 10
ACCESS_FS_MAKE_BLOCK = 1 << 11
ACCESS_FS_MAKE_SYM = 1 << 12
ACCESS_FS_REFER = 1 << 13  # ABI 2
ACCESS_FS_TRUNCATE = 1 << 14  # ABI 3
ACCESS_FS_IOCTL_DEV = 1 << 15  # ABI 5
ACCESS_NET_BIND_TCP = 1 << 0  # ABI 4
ACCESS_NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6
RULE_PATH_BENEATH = 1

READ = ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR
READ_EXEC = READ | ACCESS_FS_EXECUTE
DEVICE = ACCESS_FS_READ_FILE | ACCESS_FS_WRITE_FILE | ACCESS_FS_TRUNCATE | ACCESS_FS_IOCTL_DEV
# Everything a build needs in its own tree; never EXECUTE, MAKE_CHAR or MAKE_BLOCK.
READ_WRITE = (
    READ
    | ACCESS_FS_WRITE_FILE
    | ACCESS_FS_REMOVE_DIR
    | ACCESS_FS_REMOVE_FILE
    | ACCESS_FS_MAKE_DIR
    | ACCESS_FS_MAKE_REG
    | ACCESS_FS_MAKE_SOCK
    | ACCESS_FS_MAKE_FIFO
    | ACCESS_FS_MAKE_SYM
    | ACCESS_FS_REFER
    | ACCESS_FS_TRUNCATE
)
# The rights that mean anything on a non-directory; the kernel rejects the others there.
FILE_RIGHTS = (
    ACCESS_FS_EXECUTE | ACCESS_FS_WRITE_FILE | ACCESS_FS_READ_FILE | ACCESS_FS_TRUNCATE | ACCESS_FS_IOCTL_DEV
)


class LandlockError(OSError):
    """Building or entering a ruleset failed."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel struct is __attribute__((packed)): 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def handled_fs(abi: int) -> int:
    """Every filesystem right this ABI knows: handling all of them makes unlisted access a denial."""
    if abi < 1:
        return 0
    mask = (1 << 13) - 1
    if abi >= 2:
        mask |= ACCESS_FS_REFER
    if abi >= 3:
        mask |= ACCESS_FS_TRUNCATE
    if abi >= 5:
        mask |= ACCESS_FS_IOCTL_DEV
    return mask


def _attr_size(abi: int) -> int:
    # Older kernels reject a larger struct whose extra fields are non-zero, and want the size of
    # the struct they know; newer ones accept any older size.
    if abi >= 6:
        return 24
    if abi >= 4:
        return 16
    return 8


@dataclass(frozen=True)
class LandlockSpec:
    """Paths and switches a ruleset is built from (derived from the policy by the fork server)."""

    exec_paths: tuple[str, ...] = ()
    read_only_paths: tuple[str, ...] = ()
    device_paths: tuple[str, ...] = ()
    writable_paths: tuple[str, ...] = ()
    denied_paths: tuple[str, ...] = ()
    deny_tcp: bool = True
    scope: bool = True


@dataclass
class Ruleset:
    fd: int
    abi: int
    rules: list[tuple[str, int]] = field(default_factory=list)
    net: bool = False
    scoped: bool = False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _create(abi: int, handled_net: int, scoped: int) -> int:
    attr = _RulesetAttr(handled_fs(abi), handled_net, scoped)
    fd = sc.libc.syscall(
        ctypes.c_long(sc.SYS_LANDLOCK_CREATE_RULESET),
        ctypes.byref(attr),
        ctypes.c_size_t(_attr_size(abi)),
        ctypes.c_uint32(0),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise LandlockError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    return int(fd)


def _add_rule(ruleset_fd: int, attr: _PathBeneathAttr) -> None:
    ret = sc.libc.syscall(
        ctypes.c_long(sc.SYS_LANDLOCK_ADD_RULE),
        ctypes.c_int(ruleset_fd),
        ctypes.c_int(RULE_PATH_BENEATH),
        ctypes.byref(attr),
        ctypes.c_uint32(0),
    )
    if ret != 0:
        err = ctypes.get_errno()
        raise LandlockError(err, f"landlock_add_rule (fd {attr.parent_fd}): {os.strerror(err)}")


def _add_path_rule(ruleset_fd: int, path: str, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        _add_rule(ruleset_fd, _PathBeneathAttr(access, fd))
    finally:
        os.close(fd)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class _Collector:
    """Turns the spec's trees into (path, access) rules, carving out denied paths."""

    def __init__(self, abi: int, denied: list[str]) -> None:
        self.handled = handled_fs(abi)
        self.denied = denied
        self.rules: list[tuple[str, int]] = []

    def grant(self, path: str, access: int, *, follow: bool = True) -> None:
        real = os.path.realpath(path) if follow else path
        if any(_under(real, d) for d in self.denied):
            return
        try:
            st = os.stat(real)
        except OSError:
            return  # a tree this host does not have (/lib32, /opt, ...)
        access &= self.handled
        if not stat.S_ISDIR(st.st_mode):
            self._add(real, access & FILE_RIGHTS)
            return
        carve = [d for d in self.denied if _under(d, real) and d != real]
        if not carve:
            self._add(real, access)
            return
        # A rule on a directory covers everything beneath it, so a tree with a denied path inside
        # is granted entry by entry instead, down to the denied path's parent. The directory
        # itself only gets READ_DIR: listing names reveals nothing the entries' rules would not.
        self._add(real, access & ACCESS_FS_READ_DIR)
        with os.scandir(real) as entries:
            for entry in entries:
                if entry.is_symlink():
                    # Following it could widen access beyond the tree (or into a denied path);
                    # skipping it matches what a rule on the directory would give: Landlock
                    # checks the link's target, never the link.
                    continue
                self.grant(entry.path, access, follow=False)

    def _add(self, path: str, access: int) -> None:
        if access:
            self.rules.append((path, access))


def collect_rules(spec: LandlockSpec, abi: int) -> list[tuple[str, int]]:
    collector = _Collector(abi, [os.path.realpath(p) for p in spec.denied_paths])
    for path in spec.exec_paths:
        collector.grant(path, READ_EXEC)
    for path in spec.read_only_paths:
        collector.grant(path, READ)
    for path in spec.device_paths:
        collector.grant(path, DEVICE)
    for path in spec.writable_paths:
        collector.grant(path, READ_WRITE)
    return collector.rules


class RulesetTemplate:
    """A ruleset ready to be built many times: every rule's path is already open.

    Building one costs an add_rule syscall per rule (about a third of a millisecond for the
    default policy); resolving the paths and carving /etc, done once here, costs several times
    that. Commands in a PID namespace need their own build: their /proc is a fresh mount whose
    root only exists once they do, and Landlock does not let a rule on the directory under a
    mount point cover the mount on top of it.
    """

    def __init__(self, spec: LandlockSpec, abi: int) -> None:
        self.abi = abi
        self.handled_fs = handled_fs(abi)
        self.handled_net = ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP if spec.deny_tcp and abi >= 4 else 0
        self.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if spec.scope and abi >= 6 else 0
        self.rules = collect_rules(spec, abi)
        self._fds: list[int] = []
        self._attrs: list[_PathBeneathAttr] = []
        try:
            for path, access in self.rules:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                self._fds.append(fd)
                self._attrs.append(_PathBeneathAttr(access, fd))
        except BaseException:
            self.close()
            raise

    def build(self, extra: tuple[tuple[str, int], ...] = ()) -> int:
        """A new ruleset fd with every rule, plus `extra` (path, access) resolved now."""
        fd = _create(self.abi, self.handled_net, self.scoped)
        try:
            for attr in self._attrs:
                _add_rule(fd, attr)
            for path, access in extra:
                _add_path_rule(fd, path, access & self.handled_fs)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        self._attrs = []


def create_ruleset(spec: LandlockSpec, abi: int | None = None) -> Ruleset:
    """Build one ruleset for `spec` with the rights of Landlock ABI `abi` (default: this kernel's)."""
    if abi is None:
        abi, reason = landlock_abi()
        if abi < 1:
            raise LandlockError(errno.ENOSYS, reason)
    template = RulesetTemplate(spec, abi)
    try:
        fd = template.build()
    finally:
        template.close()
    return Ruleset(
        fd=fd, abi=abi, rules=template.rules, net=bool(template.handled_net), scoped=bool(template.scoped)
    )


def restrict_self(ruleset_fd: int) -> None:
    """Enter the ruleset. Needs no_new_privs (or CAP_SYS_ADMIN); irreversible for this process tree."""
    ret = sc.libc.syscall(
        ctypes.c_long(sc.SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset_fd), ctypes.c_uint32(0)
    )
    if ret != 0:
        err = ctypes.get_errno()
        raise LandlockError(err, f"landlock_restrict_self: {os.strerror(err)}")
