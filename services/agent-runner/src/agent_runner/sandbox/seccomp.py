"""The seccomp filter: one list of rules, compiled for commands here and exported for the pod.

The filter allows by default and refuses what a build, a test run or a shell never needs but an
escape does: other processes' memory (ptrace and friends), mounts and namespaces, kernel attack
surface that unprivileged code rarely touches (bpf, io_uring, keyrings, perf, userfaultfd),
module and kexec loading, anonymous executable memory (memfd_create: memfd exec would bypass
every path-based execute check), and sockets outside the allowed families. A default-deny
allowlist would be stricter, but every new kernel and every toolchain would break it; the
trade-off (syscalls added by future kernels are allowed) is written down in docs/security.md.

`rules()` is the only source. `compile_bpf()` turns it into a BPF program with libseccomp (via
pyseccomp, once per policy, in the fork server); `install()` loads that program in the command's
process just before exec without calling libseccomp again. `seccomp_profile.py` renders the same
rules as an OCI / Kubernetes seccomp profile.
"""

from __future__ import annotations

import ctypes
import errno
import tempfile
from dataclasses import dataclass

from . import _syscalls as sc

EPERM = errno.EPERM
ENOSYS = errno.ENOSYS

# <linux/sched.h>: clone flags that create namespaces. CLONE_NEWTIME (0x80) is only accepted by
# clone3 and unshare, both refused outright.
NAMESPACE_CLONE_FLAGS = (
    ("CLONE_NEWNS", sc.CLONE_NEWNS),
    ("CLONE_NEWCGROUP", sc.CLONE_NEWCGROUP),
    ("CLONE_NEWUTS", sc.CLONE_NEWUTS),
    ("CLONE_NEWIPC", sc.CLONE_NEWIPC),
    ("CLONE_NEWUSER", sc.CLONE_NEWUSER),
    ("CLONE_NEWPID", sc.CLONE_NEWPID),
    ("CLONE_NEWNET", sc.CLONE_NEWNET),
)

AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_NETLINK = 16
AF_PACKET = 17
# One past the highest address family Linux knows (AF_MCTP = 45); families the kernel adds later
# are refused by a single ">=" rule, so the list fails closed.
AF_MAX = 46

PERSONALITY_QUERY = 0xFFFFFFFF

# Refused with EPERM whatever the policy. Grouped by why, which is also how docs/security.md
# explains them.
DENIED_SYSCALLS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "access to other processes",
        ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp"),
    ),
    (
        "mounts and namespaces",
        (
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "open_tree_attr",
            "mount_setattr",
            "unshare",
            "setns",
        ),
    ),
    (
        "kernel attack surface",
        (
            "bpf",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "keyctl",
            "add_key",
            "request_key",
            "perf_event_open",
            "userfaultfd",
            "fanotify_init",
            "open_by_handle_at",
            "name_to_handle_at",
            "lookup_dcookie",
        ),
    ),
    (
        "kernel and module loading",
        ("kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module"),
    ),
    ("anonymous executable memory", ("memfd_create", "memfd_secret")),
    (
        "host administration",
        (
            "swapon",
            "swapoff",
            "reboot",
            "acct",
            "quotactl",
            "quotactl_fd",
            "syslog",
            "vhangup",
            "iopl",
            "ioperm",
            "settimeofday",
            "clock_settime",
            "uselib",
            "nfsservctl",
            "_sysctl",
        ),
    ),
)

# Syscalls newer than the libseccomp some hosts ship; numbers from the unified table (same on
# x86_64 and aarch64), used only when libseccomp cannot resolve the name.
_FALLBACK_NUMBERS = {"open_tree_attr": 467}


@dataclass(frozen=True)
class ArgMatch:
    """One comparison on a syscall argument, in libseccomp / OCI terms."""

    index: int
    op: str  # "EQ", "NE", "GE", "MASKED_EQ"
    value: int
    value_two: int = 0


@dataclass(frozen=True)
class SyscallRule:
    names: tuple[str, ...]
    errno: int
    arg: ArgMatch | None = None
    why: str = ""


def denied_socket_families(allow_network: bool, allow_unix: bool) -> list[int]:
    """Every address family below AF_MAX that the policy refuses (AF_NETLINK is always allowed:
    getaddrinfo and interface listing use it, and without CAP_NET_ADMIN it only reads)."""
    allowed = {AF_NETLINK}
    if allow_unix:
        allowed.add(AF_UNIX)
    if allow_network:
        allowed |= {AF_INET, AF_INET6}
    return [family for family in range(AF_MAX) if family not in allowed]


def rules(allow_network: bool = False, allow_unix: bool = True) -> list[SyscallRule]:
    """The complete rule list for a policy: everything not listed is allowed."""
    out: list[SyscallRule] = [SyscallRule(names, EPERM, why=why) for why, names in DENIED_SYSCALLS]
    # clone3 passes its flags in a struct seccomp cannot read; ENOSYS makes glibc fall back to
    # clone, whose flags it can.
    out.append(SyscallRule(("clone3",), ENOSYS, why="flags unreadable by seccomp: force the clone fallback"))
    for name, flag in NAMESPACE_CLONE_FLAGS:
        out.append(SyscallRule(("clone",), EPERM, ArgMatch(0, "MASKED_EQ", flag, flag), why=f"clone({name})"))
    # Only the query form (0xffffffff) reads the execution domain; every other value changes it.
    out.append(
        SyscallRule(
            ("personality",), EPERM, ArgMatch(0, "NE", PERSONALITY_QUERY), why="execution domain changes"
        )
    )
    for family in denied_socket_families(allow_network, allow_unix):
        out.append(SyscallRule(("socket",), EPERM, ArgMatch(0, "EQ", family), why=f"address family {family}"))
    out.append(
        SyscallRule(("socket",), EPERM, ArgMatch(0, "GE", AF_MAX), why="address families Linux adds later")
    )
    return out


class SeccompUnavailable(RuntimeError):
    """libseccomp (Debian: libseccomp2) is missing, or the kernel has no seccomp filters."""


def _pyseccomp():
    try:
        import pyseccomp
    except (ImportError, OSError, AttributeError, TypeError) as exc:
        # Without the shared library pyseccomp fails at import with one of these, depending on
        # how far ctypes got: the message names the package to install either way.
        raise SeccompUnavailable(
            f"libseccomp is not usable ({exc}); install the libseccomp2 package"
        ) from None
    return pyseccomp


def compile_bpf(rule_list: list[SyscallRule]) -> bytes:
    """The BPF program for the native architecture, as the raw bytes the kernel loads."""
    ps = _pyseccomp()
    ops = {"EQ": ps.EQ, "NE": ps.NE, "GE": ps.GE, "MASKED_EQ": ps.MASKED_EQ}
    filt = ps.SyscallFilter(ps.ALLOW)
    # Syscalls of another ABI (i386 int 0x80, x32) would bypass rules written for this one:
    # the process is killed instead. The native arch is the only one in the filter.
    filt.set_attr(ps.Attr.ACT_BADARCH, ps.KILL_PROCESS)
    # A binary tree of syscall numbers instead of a linear chain: every syscall pays this filter.
    filt.set_attr(ps.Attr.CTL_OPTIMIZE, 2)
    arch = ps.system_arch()
    for rule in rule_list:
        args = []
        if rule.arg is not None:
            args.append(ps.Arg(rule.arg.index, ops[rule.arg.op], rule.arg.value, rule.arg.value_two))
        for name in rule.names:
            try:
                number = ps.resolve_syscall(arch, name)
            except (OSError, ValueError):
                number = -1
            if number == -1:  # unknown to this libseccomp
                number = _FALLBACK_NUMBERS.get(name, -1)
                if number == -1:
                    continue
            filt.add_rule(ps.ERRNO(rule.errno), number, *args)
    with tempfile.TemporaryFile() as out:
        filt.export_bpf(out)
        out.seek(0)
        return out.read()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class PreparedFilter:
    """A compiled program held in memory ready to load: loading allocates nothing (it runs in
    the forked command process between fork and exec)."""

    def __init__(self, bpf: bytes) -> None:
        if not bpf or len(bpf) % 8:
            raise ValueError("a BPF program is a non-empty sequence of 8-byte instructions")
        self.bpf = bpf
        self._buffer = ctypes.create_string_buffer(bpf, len(bpf))
        self._prog = _SockFprog(len(bpf) // 8, ctypes.addressof(self._buffer))
        self.address = ctypes.addressof(self._prog)

    @property
    def instructions(self) -> int:
        return len(self.bpf) // 8


def install(prepared: PreparedFilter) -> None:
    """Load the filter into this process (needs no_new_privs). Irreversible and inherited."""
    sc.prctl(sc.PR_SET_SECCOMP, sc.SECCOMP_MODE_FILTER, prepared.address)


def prepare(allow_network: bool, allow_unix: bool) -> PreparedFilter:
    return PreparedFilter(compile_bpf(rules(allow_network, allow_unix)))
