"""What confinement this kernel and process can offer. Read-only probes: nothing here confines anything.

Used by `secure-agent doctor`, `/diagnostics` and (later) by the sandbox to decide which controls apply.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

SYS_OPENAT2 = 437
SYS_LANDLOCK_CREATE_RULESET = 444
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


@dataclass(frozen=True)
class Capabilities:
    kernel: str
    landlock_abi: int  # 0 = unavailable
    landlock_reason: str
    seccomp: bool
    seccomp_reason: str
    libseccomp: bool
    openat2: bool
    user_namespaces: bool
    cgroup: str  # "v2", "v1", "none"
    is_root: bool

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"landlock={'abi' + str(self.landlock_abi) if self.landlock_abi else 'off'} "
            f"seccomp={'on' if self.seccomp else 'off'} openat2={'on' if self.openat2 else 'off'} "
            f"userns={'on' if self.user_namespaces else 'off'} cgroup={self.cgroup}"
        )


def landlock_abi() -> tuple[int, str]:
    # create_ruleset(NULL, 0, VERSION) returns the ABI version without creating anything.
    abi = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    if abi >= 1:
        return int(abi), "available"
    err = ctypes.get_errno()
    if err == errno.ENOSYS:
        return 0, "kernel built without Landlock (CONFIG_SECURITY_LANDLOCK)"
    if err == errno.EOPNOTSUPP:
        return 0, "Landlock is disabled: add 'landlock' to the lsm= kernel boot parameter"
    return 0, f"Landlock probe failed: {os.strerror(err)}"


def seccomp_status() -> tuple[bool, str]:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError as exc:
        return False, f"cannot read /proc/self/status: {exc}"
    if "Seccomp:" not in status:
        return False, "kernel built without seccomp (CONFIG_SECCOMP)"
    if Path("/proc/sys/kernel/seccomp/actions_avail").exists():
        return True, "seccomp filter mode available"
    return True, "seccomp present (actions list not exposed)"


def openat2_available() -> bool:
    # An open_how of all zeros on "." is the cheapest valid call: ENOSYS means the kernel predates 5.6.
    how = (ctypes.c_uint64 * 3)(os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0, 0)
    fd = _libc.syscall(SYS_OPENAT2, ctypes.c_int(-100), b".", ctypes.byref(how), ctypes.c_size_t(24))
    if fd >= 0:
        os.close(fd)
        return True
    return ctypes.get_errno() != errno.ENOSYS


def user_namespaces_available() -> bool:
    knob = Path("/proc/sys/user/max_user_namespaces")
    try:
        return int(knob.read_text().strip()) > 0
    except (OSError, ValueError):
        return False


def cgroup_version() -> str:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return "v2"
    if Path("/sys/fs/cgroup/memory").is_dir() or Path("/sys/fs/cgroup/pids").is_dir():
        return "v1"
    return "none"


def probe() -> Capabilities:
    abi, ll_reason = landlock_abi()
    sec, sec_reason = seccomp_status()
    return Capabilities(
        kernel=platform.release(),
        landlock_abi=abi,
        landlock_reason=ll_reason,
        seccomp=sec,
        seccomp_reason=sec_reason,
        libseccomp=ctypes.util.find_library("seccomp") is not None,
        openat2=openat2_available(),
        user_namespaces=user_namespaces_available(),
        cgroup=cgroup_version(),
        is_root=os.geteuid() == 0,
    )
