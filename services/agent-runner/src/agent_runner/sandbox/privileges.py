"""Giving up privileges in the command process: uid/gid, capabilities, no_new_privs.

Where the runner is root, a command runs as an unprivileged uid (the policy's `drop_to_uid`,
"nobody" by default). Where that is impossible (the workspace could not be made writable for
it), the command keeps uid 0 but loses every capability, with the securebits that stop exec
from handing them back; Landlock and the mount/PID namespaces then carry the isolation.
"""

from __future__ import annotations

import ctypes
import os

from . import _syscalls as sc

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# <linux/securebits.h>: uid 0 gains no capabilities on exec, capabilities cannot be kept across
# a uid change nor raised as ambient, and all of it is locked. SECBIT_NO_SETUID_FIXUP is left
# off on purpose: it would let capabilities survive the switch to the unprivileged uid.
SECBIT_NOROOT = 1 << 0
SECBIT_NOROOT_LOCKED = 1 << 1
SECBIT_KEEP_CAPS_LOCKED = 1 << 5
SECBIT_NO_CAP_AMBIENT_RAISE = 1 << 6
SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 7
SECURE_ALL = (
    SECBIT_NOROOT
    | SECBIT_NOROOT_LOCKED
    | SECBIT_KEEP_CAPS_LOCKED
    | SECBIT_NO_CAP_AMBIENT_RAISE
    | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED
)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def has_capability(cap: int) -> bool:
    """Whether this process has `cap` in its effective set."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> cap & 1)
    except OSError:
        pass
    return False


CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_SYS_ADMIN = 21


class Dropper:
    """Everything the drop needs, allocated before fork so the child only makes syscalls."""

    def __init__(self, uid: int | None, gid: int | None) -> None:
        self.uid = uid
        self.gid = gid
        self.cap_last = last_cap()
        self.can_setpcap = has_capability(CAP_SETPCAP)
        self._header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        self._data = (_CapData * 2)()

    def drop(self) -> None:
        if self.can_setpcap:
            # The bounding set caps what any later exec can gain; clearing it needs CAP_SETPCAP,
            # so it comes before the uid change that removes that capability.
            for cap in range(self.cap_last + 1):
                sc.libc.prctl(sc.PR_CAPBSET_DROP, cap, 0, 0, 0)
            sc.prctl(sc.PR_SET_SECUREBITS, SECURE_ALL)
        sc.libc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        if self.uid is not None and self.gid is not None:
            os.setgroups([])
            os.setresgid(self.gid, self.gid, self.gid)
            os.setresuid(self.uid, self.uid, self.uid)
        # With a uid change the kernel has cleared the sets already; for a kept uid 0 this is
        # what removes them.
        if sc.libc.capset(ctypes.byref(self._header), ctypes.byref(self._data)) != 0:
            sc.raise_errno("capset")


def no_new_privs() -> None:
    """Exec can never grant privileges again (setuid bits, file capabilities): required by
    Landlock and by seccomp for an unprivileged process, and inherited by every descendant."""
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
